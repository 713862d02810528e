import { ConfigError, type ConfigErrorCode } from '../../errors.js';
import type { ConfigIssue } from './types.js';

/**
 * A configuration file was refused; {@link ConfigValidationError.issues} lists **every** problem
 * found, each with its line and column, not just the first.
 *
 * It is a {@link ConfigError}, so code that only knows `ConfigError` keeps working. Its `code` is
 * the issues' code when they all share one (a single `ERR_CONFIG_DUPLICATE_PEER`, two
 * `ERR_CONFIG_URL`s, a YAML syntax error `ERR_CONFIG_YAML`), else `ERR_CONFIG_SCHEMA`: a file with
 * several kinds of problem is first of all structurally wrong.
 */
export class ConfigValidationError extends ConfigError {
  /** Every problem, in document order. Never empty. */
  readonly issues: readonly ConfigIssue[];

  constructor(what: string, issues: readonly ConfigIssue[]) {
    if (issues.length === 0) throw new TypeError('ConfigValidationError needs at least one issue');
    const sorted = [...issues].sort((a, b) => a.line - b.line || a.column - b.column);
    const first = sorted[0]!;
    const code: ConfigErrorCode = sorted.every((i) => i.code === first.code)
      ? first.code
      : 'ERR_CONFIG_SCHEMA';
    const summary = sorted.map(formatIssue).join('; ');
    super(
      code,
      sorted.length === 1
        ? `${what} is invalid: ${summary}`
        : `${what} has ${sorted.length} problems: ${summary}`,
    );
    this.issues = Object.freeze(sorted);
  }

  /** `{ code, message, issues }` for JSON output. */
  override toJSON(): { code: ConfigErrorCode; message: string; issues: readonly ConfigIssue[] } {
    return { code: this.code, message: this.message, issues: this.issues };
  }
}

/**
 * `line:column: path: message` (path omitted for the document root), prefixed with `file:` when
 * the issue is in another file than the one being read.
 */
export function formatIssue(issue: ConfigIssue): string {
  const at = issue.path === '' ? '' : `${issue.path}: `;
  return `${issue.file !== undefined ? `${issue.file}:` : ''}${issue.line}:${issue.column}: ${at}${issue.message}`;
}
