import { createHash, type KeyObject } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  AUDIT_GENESIS,
  AUDIT_GROUP_MAX_RECORDS,
  AUDIT_TAIL_WINDOW_BYTES,
  AuditTrail,
  AuditWriter,
  encodeRecord,
  loadOrCreateAuditKey,
  nodeAuditFs,
  parseAuditPublicKey,
  verifyAuditLog,
} from '../../../src/adapters/audit/index.js';
import { diffBundles } from '../../../src/core/bundle/index.js';
import { keyPairSync } from '../../../src/platform/keygen.js';
import { MemoryAuditFs } from './fake-fs.js';

const FILE = '/audit.log';
const KEY = '/audit-key.pem';
let clock = 0;
const now = () => Date.UTC(2026, 0, 1) + clock++ * 1000;

async function writerWith(fs: MemoryAuditFs, fsync: 'always' | 'never' = 'always') {
  return AuditWriter.open({ file: FILE, keyFile: KEY, fsync }, { fs, now });
}

/** A log of `n` records after audit-start, and its key. */
async function makeLog(n: number): Promise<{ fs: MemoryAuditFs; key: KeyObject; lines: string[] }> {
  const fs = new MemoryAuditFs();
  const w = await writerWith(fs);
  for (let i = 0; i < n; i++)
    await w.append('bundle-refused', { trustDomain: `td${i}.example`, code: 'ERR_X', i });
  await w.close();
  return { fs, key: w.publicKey, lines: fs.text(FILE).split('\n').slice(0, -1) };
}

const join_ = (lines: string[]) => `${lines.join('\n')}\n`;

describe('AuditWriter + verifyAuditLog', () => {
  it('writes audit-start then chained, signed records that verify', async () => {
    const { fs, key, lines } = await makeLog(3);
    expect(lines).toHaveLength(4);
    const first = JSON.parse(lines[0]!);
    expect(Object.keys(first)).toEqual(['seq', 'time', 'type', 'data', 'prev', 'sig']);
    expect(first).toMatchObject({
      seq: 1,
      type: 'audit-start',
      prev: AUDIT_GENESIS,
      time: '2026-01-01T00:00:00.000Z',
    });
    const v = verifyAuditLog(fs.text(FILE), key);
    expect(v).toMatchObject({ ok: true, keySource: 'given' });
    if (!v.ok) return;
    expect(v.records.map((r) => r.seq)).toEqual([1, 2, 3, 4]);
    expect(v.records[2]!.data).toEqual({ trustDomain: 'td1.example', code: 'ERR_X', i: 1 });
    expect(verifyAuditLog(fs.text(FILE))).toMatchObject({ ok: true, keySource: 'declared', keyId: v.keyId });
  });

  it('an empty log verifies with no records', () => {
    expect(verifyAuditLog('')).toMatchObject({ ok: true, records: [] });
  });

  describe('tampering is found at the right record', () => {
    it('an edited payload (signature)', async () => {
      const { key, lines } = await makeLog(4);
      lines[2] = lines[2]!.replace('td1.example', 'td9.example');
      expect(verifyAuditLog(join_(lines), key)).toMatchObject({
        ok: false,
        brokenAt: 3,
        code: 'ERR_AUDIT_SIGNATURE',
        verifiedRecords: 2,
      });
    });

    it('a deleted record (chain)', async () => {
      const { key, lines } = await makeLog(4);
      lines.splice(2, 1);
      expect(verifyAuditLog(join_(lines), key)).toMatchObject({
        ok: false,
        brokenAt: 3,
        code: 'ERR_AUDIT_CHAIN_BROKEN',
      });
    });

    it('reordered records (chain)', async () => {
      const { key, lines } = await makeLog(4);
      [lines[2], lines[3]] = [lines[3]!, lines[2]!];
      expect(verifyAuditLog(join_(lines), key)).toMatchObject({
        ok: false,
        brokenAt: 3,
        code: 'ERR_AUDIT_CHAIN_BROKEN',
      });
    });

    it('an inserted record, even properly signed (chain)', async () => {
      const { fs, key, lines } = await makeLog(3);
      const priv = (await loadOrCreateAuditKey(KEY, fs)).privateKey;
      const forged = encodeRecord(
        { seq: 3, time: '2026-01-01T00:00:00.000Z', type: 'drift', data: {}, prev: AUDIT_GENESIS },
        priv,
      );
      lines.splice(2, 0, forged.line);
      expect(verifyAuditLog(join_(lines), key)).toMatchObject({
        ok: false,
        brokenAt: 3,
        code: 'ERR_AUDIT_CHAIN_BROKEN',
      });
    });

    it('one record re-signed with another key (signature)', async () => {
      const { key, lines } = await makeLog(4);
      const other = keyPairSync('ed25519').privateKey;
      const r = JSON.parse(lines[3]!);
      lines[3] = encodeRecord(
        { seq: r.seq, time: r.time, type: r.type, data: r.data, prev: r.prev },
        other,
      ).line;
      expect(verifyAuditLog(join_(lines), key)).toMatchObject({
        ok: false,
        brokenAt: 4,
        code: 'ERR_AUDIT_SIGNATURE',
      });
    });

    it('a whole log re-signed with another key: refused with the trusted key, consistent with its own', async () => {
      const { key, lines } = await makeLog(3);
      const other = keyPairSync('ed25519');
      let prev = AUDIT_GENESIS;
      const forged = lines.map((l) => {
        const r = JSON.parse(l);
        const data =
          r.type === 'audit-start'
            ? {
                ...r.data,
                publicKey: other.publicKey.export({ type: 'spki', format: 'der' }).toString('base64'),
              }
            : r.data;
        const { line } = encodeRecord(
          { seq: r.seq, time: r.time, type: r.type, data, prev },
          other.privateKey,
        );
        prev = createHash('sha256').update(line).digest('hex');
        return line;
      });
      expect(verifyAuditLog(join_(forged), key)).toMatchObject({
        ok: false,
        brokenAt: 1,
        code: 'ERR_AUDIT_SIGNATURE',
      });
      expect(verifyAuditLog(join_(forged))).toMatchObject({ ok: true, keySource: 'declared' });
    });

    it('a log truncated mid-line (record)', async () => {
      const { fs, key } = await makeLog(3);
      const text = fs.text(FILE);
      expect(verifyAuditLog(text.slice(0, -20), key)).toMatchObject({
        ok: false,
        brokenAt: 4,
        code: 'ERR_AUDIT_RECORD',
      });
      expect(verifyAuditLog(text.slice(0, -1), key)).toMatchObject({
        ok: false,
        brokenAt: 4,
        code: 'ERR_AUDIT_RECORD',
      });
    });

    it('a missing beginning (first record not audit-start)', async () => {
      const { key, lines } = await makeLog(3);
      expect(verifyAuditLog(join_(lines.slice(1)), key)).toMatchObject({
        ok: false,
        brokenAt: 1,
        code: 'ERR_AUDIT_CHAIN_BROKEN',
      });
    });

    it('non-canonical encodings (whitespace, signature spare bits)', async () => {
      const { key, lines } = await makeLog(2);
      const spaced = [...lines];
      spaced[1] = spaced[1]!.replace('"seq":2', '"seq": 2');
      expect(verifyAuditLog(join_(spaced), key)).toMatchObject({ brokenAt: 2, code: 'ERR_AUDIT_RECORD' });
      // The last base64url character of a 64-byte signature carries 4 unused bits.
      const sigSpare = [...lines];
      const l = sigSpare[1]!;
      const last = l.at(-3)!;
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
      const twin = alphabet[alphabet.indexOf(last) ^ 1]!;
      sigSpare[1] = `${l.slice(0, -3)}${twin}"}`;
      expect(Buffer.from(JSON.parse(sigSpare[1]).sig, 'base64url')).toEqual(
        Buffer.from(JSON.parse(l).sig, 'base64url'),
      );
      expect(verifyAuditLog(join_(sigSpare), key)).toMatchObject({
        ok: false,
        brokenAt: 2,
        code: 'ERR_AUDIT_RECORD',
      });
    });

    it('cutting whole records off the end is not detectable without an outside anchor (documented)', async () => {
      const { key, lines } = await makeLog(3);
      expect(verifyAuditLog(join_(lines.slice(0, 2)), key)).toMatchObject({ ok: true });
    });

    it('any single-byte edit anywhere is detected (property)', async () => {
      const { fs, key } = await makeLog(0);
      const w = await writerWith(fs);
      const payload = fc.record({
        trustDomain: fc.stringMatching(/^[a-z0-9.-]{1,20}$/),
        note: fc.string({ maxLength: 30 }),
        n: fc.integer(),
      });
      const samples = fc.sample(fc.array(payload, { minLength: 1, maxLength: 5 }), 1)[0]!;
      for (const p of samples) await w.append('drift', p);
      await w.close();
      const bytes = fs.files.get(FILE)!;
      expect(verifyAuditLog(bytes, key).ok).toBe(true);
      fc.assert(
        fc.property(fc.nat(bytes.length - 1), fc.integer({ min: 1, max: 255 }), (pos, delta) => {
          const edited = Uint8Array.from(bytes);
          edited[pos] = (edited[pos]! + delta) % 256;
          const v = verifyAuditLog(edited, key);
          expect(v.ok).toBe(false);
          // The break is reported at or before the edited line.
          const editedLine = bytes.subarray(0, pos).filter((b) => b === 0x0a).length + 1;
          if (!v.ok) expect(v.brokenAt).toBeLessThanOrEqual(editedLine + 1);
        }),
        { numRuns: 400 },
      );
    });

    it('random record sequences with a random single-byte edit are always detected (property)', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(
            fc.record({
              k: fc.string({ maxLength: 12 }),
              v: fc.oneof(fc.integer(), fc.boolean(), fc.string()),
            }),
            {
              minLength: 0,
              maxLength: 6,
            },
          ),
          fc.nat(),
          fc.integer({ min: 1, max: 255 }),
          async (records, posSeed, delta) => {
            const fs = new MemoryAuditFs();
            const w = await writerWith(fs, 'never');
            for (const r of records) await w.append('spire-write', r);
            await w.close();
            const bytes = fs.files.get(FILE)!;
            const edited = Uint8Array.from(bytes);
            const pos = posSeed % bytes.length;
            edited[pos] = (edited[pos]! + delta) % 256;
            expect(verifyAuditLog(edited, w.publicKey).ok).toBe(false);
          },
        ),
        { numRuns: 60 },
      );
    });
  });

  describe('resume', () => {
    it('continues the chain after a restart', async () => {
      const fs = new MemoryAuditFs();
      const w1 = await writerWith(fs);
      await w1.append('drift', { a: 1 });
      await w1.close();
      const w2 = await writerWith(fs);
      expect(w2.resume).toEqual({ kind: 'resumed', lastSeq: 2 });
      expect(w2.keyCreated).toBe(false);
      const r = await w2.append('drift', { a: 2 });
      expect(r.seq).toBe(3);
      await w2.close();
      const v = verifyAuditLog(fs.text(FILE), w1.publicKey);
      expect(v.ok && v.records.map((x) => x.type)).toEqual(['audit-start', 'drift', 'drift']);
    });

    it('starts a new segment after a truncated tail, referencing the break', async () => {
      const { fs, key } = await makeLog(2);
      const whole = fs.text(FILE);
      fs.setText(FILE, whole.slice(0, -15));
      const w = await writerWith(fs);
      expect(w.resume).toMatchObject({ kind: 'broken-tail', brokenAtLine: 3, code: 'ERR_AUDIT_RECORD' });
      await w.append('drift', { after: true });
      await w.close();
      const lines = fs.text(FILE).split('\n');
      expect(lines).toHaveLength(6);
      const seg = JSON.parse(lines[3]!);
      expect(seg).toMatchObject({
        seq: 3,
        type: 'segment-start',
        data: { reason: 'broken-tail', brokenAtLine: 3, code: 'ERR_AUDIT_RECORD' },
      });
      expect(seg.prev).toBe(createHash('sha256').update(lines[2]!).digest('hex'));
      expect(JSON.parse(lines[4]!)).toMatchObject({ seq: 4, type: 'drift' });
      // The break stays visible to verification.
      expect(verifyAuditLog(fs.text(FILE), key)).toMatchObject({ ok: false, brokenAt: 3 });
    });

    it('reads only the tail of a large log to resume, and the chain continues', async () => {
      const { fs, key } = await makeLog(1500);
      const size = fs.files.get(FILE)!.length;
      expect(size).toBeGreaterThan(4 * AUDIT_TAIL_WINDOW_BYTES);
      fs.bytesRead = 0;
      const w = await writerWith(fs);
      // The whole file was read into memory before (bytesRead === size).
      expect(fs.bytesRead).toBeLessThanOrEqual(AUDIT_TAIL_WINDOW_BYTES + 1024); // + the key file
      expect(w.resume).toEqual({ kind: 'resumed', lastSeq: 1501 });
      expect((await w.append('drift', { after: true })).seq).toBe(1502);
      await w.close();
      expect(verifyAuditLog(fs.text(FILE), key)).toMatchObject({ ok: true });
    });

    it('after a broken tail of a large log, names the right line and continues after the last good record', async () => {
      const { fs, key } = await makeLog(1200);
      const whole = fs.text(FILE);
      fs.setText(FILE, whole.slice(0, -15));
      fs.bytesRead = 0;
      const w = await writerWith(fs);
      expect(w.resume).toMatchObject({ kind: 'broken-tail', brokenAtLine: 1201, code: 'ERR_AUDIT_RECORD' });
      // Counting the lines before the window streams the file; it is never held whole.
      await w.append('drift', {});
      await w.close();
      const lines = fs.text(FILE).split('\n');
      expect(JSON.parse(lines[1201]!)).toMatchObject({
        seq: 1201,
        type: 'segment-start',
        data: { brokenAtLine: 1201 },
      });
      expect(verifyAuditLog(fs.text(FILE), key)).toMatchObject({ ok: false, brokenAt: 1201 });
    });

    it('widens the window past a garbage tail line longer than it', async () => {
      const { fs } = await makeLog(500);
      const junk = `${'x'.repeat(3 * AUDIT_TAIL_WINDOW_BYTES)}\n`;
      fs.setText(FILE, fs.text(FILE) + junk);
      const w = await writerWith(fs);
      expect(w.resume).toMatchObject({ kind: 'broken-tail', brokenAtLine: 502, code: 'ERR_AUDIT_RECORD' });
      expect((await w.append('drift', {})).seq).toBe(503);
      await w.close();
    });

    it('resumes a real file through nodeAuditFs (size, readRange)', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'audit-tail-'));
      try {
        const opts = { file: join(dir, 'audit.log'), keyFile: join(dir, 'k.pem') };
        const w1 = await AuditWriter.open(opts);
        for (let i = 0; i < 400; i++) await w1.append('drift', { i });
        await w1.close();
        const w2 = await AuditWriter.open(opts);
        expect(w2.resume).toEqual({ kind: 'resumed', lastSeq: 401 });
        await w2.close();
        expect(await nodeAuditFs.size!(join(dir, 'missing'))).toBeUndefined();
        const head = await nodeAuditFs.readRange!(opts.file, 0, 8);
        expect(new TextDecoder().decode(head)).toBe('{"seq":1');
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('starts a new segment when the key file was replaced', async () => {
      const { fs } = await makeLog(1);
      fs.files.delete(KEY);
      const w = await writerWith(fs);
      expect(w.keyCreated).toBe(true);
      expect(w.resume).toMatchObject({ kind: 'broken-tail', brokenAtLine: 2, code: 'ERR_AUDIT_SIGNATURE' });
      await w.close();
      expect(JSON.parse(fs.text(FILE).split('\n')[2]!)).toMatchObject({ seq: 1, type: 'segment-start' });
    });
  });

  it('fsyncs every record by default, never with fsync: never', async () => {
    const fs = new MemoryAuditFs();
    const w = await writerWith(fs);
    await w.append('drift', {});
    await w.append('drift', {});
    expect(fs.syncs).toBe(3);
    await w.close();
    const fs2 = new MemoryAuditFs();
    const w2 = await writerWith(fs2, 'never');
    await w2.append('drift', {});
    expect(fs2.syncs).toBe(0);
  });

  it('serializes concurrent appends in call order', async () => {
    const fs = new MemoryAuditFs();
    const w = await writerWith(fs, 'never');
    const rs = await Promise.all(Array.from({ length: 30 }, (_, i) => w.append('drift', { i })));
    expect(rs.map((r) => r.seq)).toEqual(Array.from({ length: 30 }, (_, i) => i + 2));
    const v = verifyAuditLog(fs.text(FILE), w.publicKey);
    expect(v.ok && v.records.slice(1).map((r) => r.data.i)).toEqual(Array.from({ length: 30 }, (_, i) => i));
  });

  describe('group commit', () => {
    it('records appended together share one write and fsync, and verify as if written one by one', async () => {
      const fs = new MemoryAuditFs();
      let appends = 0;
      const open = fs.openAppend.bind(fs);
      fs.openAppend = async (path) => {
        const h = await open(path);
        return {
          ...h,
          append: (d) => {
            appends++;
            return h.append(d);
          },
        };
      };
      const w = await writerWith(fs);
      expect([fs.syncs, appends]).toEqual([1, 1]); // audit-start
      const n = AUDIT_GROUP_MAX_RECORDS * 2 + 5;
      const rs = await Promise.all(Array.from({ length: n }, (_, i) => w.append('drift', { i })));
      // Three groups, not one write and fsync per record.
      expect([fs.syncs, appends]).toEqual([4, 4]);
      expect(rs.map((r) => r.seq)).toEqual(Array.from({ length: n }, (_, i) => i + 2));
      const v = verifyAuditLog(fs.text(FILE), w.publicKey);
      expect(v.ok && v.records.length).toBe(n + 1);
      // Awaited one by one, every record is still durable before its append resolves.
      await w.append('drift', { i: n });
      expect(fs.syncs).toBe(5);
    });

    it('a record that cannot be encoded is refused alone; the chain goes on', async () => {
      const fs = new MemoryAuditFs();
      const w = await writerWith(fs);
      const [a, bad, c] = await Promise.allSettled([
        w.append('drift', { i: 1 }),
        w.append('drift', { big: 1n } as never),
        w.append('drift', { i: 3 }),
      ]);
      expect(a).toMatchObject({ status: 'fulfilled', value: { seq: 2 } });
      expect(bad).toMatchObject({ status: 'rejected', reason: { code: 'ERR_AUDIT_WRITE' } });
      expect(c).toMatchObject({ status: 'fulfilled', value: { seq: 3 } });
      const v = verifyAuditLog(fs.text(FILE), w.publicKey);
      expect(v.ok && v.records.map((r) => r.data.i)).toEqual([undefined, 1, 3]);
    });

    it('a failed group write refuses every record of the group and all later ones', async () => {
      const fs = new MemoryAuditFs();
      const w = await writerWith(fs);
      fs.failWrites = true;
      const rs = await Promise.allSettled([w.append('drift', { i: 1 }), w.append('drift', { i: 2 })]);
      expect(rs.map((r) => r.status)).toEqual(['rejected', 'rejected']);
      fs.failWrites = false;
      await expect(w.append('drift', {})).rejects.toMatchObject({ code: 'ERR_AUDIT_WRITE' });
      expect(fs.text(FILE).split('\n').filter(Boolean)).toHaveLength(1);
    });

    it('close writes what was appended before it and refuses what comes after', async () => {
      const fs = new MemoryAuditFs();
      const w = await writerWith(fs);
      const before = w.append('drift', { i: 1 });
      await w.close();
      await expect(before).resolves.toMatchObject({ seq: 2 });
      await expect(w.append('drift', { i: 2 })).rejects.toMatchObject({ code: 'ERR_AUDIT_WRITE' });
      expect(verifyAuditLog(fs.text(FILE), w.publicKey)).toMatchObject({ ok: true });
    });
  });

  it('refuses further records after a failed write', async () => {
    const fs = new MemoryAuditFs();
    const w = await writerWith(fs);
    fs.failWrites = true;
    await expect(w.append('drift', {})).rejects.toMatchObject({ code: 'ERR_AUDIT_WRITE' });
    fs.failWrites = false;
    await expect(w.append('drift', {})).rejects.toMatchObject({ code: 'ERR_AUDIT_WRITE' });
  });
});

describe('audit key', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'audit-key-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('generates an Ed25519 PKCS#8 key with mode 0600 and reuses it', async () => {
    const path = join(dir, 'audit.pem');
    const a = await loadOrCreateAuditKey(path, nodeAuditFs);
    expect(a.created).toBe(true);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(await readFile(path, 'utf8')).toContain('BEGIN PRIVATE KEY');
    const b = await loadOrCreateAuditKey(path, nodeAuditFs);
    expect(b.created).toBe(false);
    expect(b.publicKey.equals(a.publicKey)).toBe(true);
  });

  it('writes and verifies a real file', async () => {
    const w = await AuditWriter.open({ file: join(dir, 'audit.log'), keyFile: join(dir, 'k.pem') });
    await w.append('drift', { x: 1 });
    await w.close();
    expect((await stat(join(dir, 'audit.log'))).mode & 0o777).toBe(0o600);
    expect(verifyAuditLog(await readFile(join(dir, 'audit.log')), w.publicKey).ok).toBe(true);
  });

  it('refuses a key that is not Ed25519', async () => {
    const path = join(dir, 'ec.pem');
    const ec = keyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
      type: 'pkcs8',
      format: 'pem',
    });
    await writeFile(path, ec);
    await expect(loadOrCreateAuditKey(path, nodeAuditFs)).rejects.toMatchObject({ code: 'ERR_AUDIT_KEY' });
    expect(() => parseAuditPublicKey(ec.toString())).toThrow(
      expect.objectContaining({ code: 'ERR_AUDIT_KEY' }),
    );
    expect(() => parseAuditPublicKey('junk')).toThrow(expect.objectContaining({ code: 'ERR_AUDIT_KEY' }));
  });
});

describe('AuditTrail', () => {
  it('writes one fixed shape per event', async () => {
    const got: [string, unknown][] = [];
    const trail = new AuditTrail({
      append: async (type, data) => {
        got.push([type, data]);
        return undefined;
      },
    });
    const { TrustBundle } = await import('../../../src/core/bundle/index.js');
    const { TrustDomain } = await import('../../../src/core/spiffeid/index.js');
    const td = TrustDomain.parse('p.example');
    const b = TrustBundle.create({ trustDomain: td, sequence: 7n });
    await trail.bundleAccepted({ trustDomain: td, sequence: 7n, diff: diffBundles(undefined, b) });
    await trail.bundleRefused({
      trustDomain: 'p.example',
      code: 'ERR_POLICY_SEQUENCE_ROLLBACK',
      message: 'back',
    });
    await trail.spireWrite({ server: 'main', trustDomain: td, operation: 'set', result: 'ok' });
    await trail.drift({ server: 'main', trustDomain: td, detail: 'missing', repaired: false });
    await trail.revocation({ trustDomain: td, code: 'ERR_PEER_REMOVED', message: 'removed' });
    await trail.allowlistChanged({ version: 'v2', added: [td], removed: [], changed: ['q.example'] });
    await trail.sequenceReset({ trustDomain: td, previousSequence: 9n });
    expect(got).toEqual([
      [
        'bundle-accepted',
        {
          trustDomain: 'p.example',
          sequence: '7',
          x509Added: [],
          x509Removed: [],
          jwtAdded: [],
          jwtRemoved: [],
          jwtChanged: [],
        },
      ],
      ['bundle-refused', { trustDomain: 'p.example', code: 'ERR_POLICY_SEQUENCE_ROLLBACK', message: 'back' }],
      ['spire-write', { server: 'main', trustDomain: 'p.example', operation: 'set', result: 'ok' }],
      ['drift', { server: 'main', trustDomain: 'p.example', detail: 'missing', repaired: false }],
      ['revocation', { trustDomain: 'p.example', code: 'ERR_PEER_REMOVED', message: 'removed' }],
      [
        'allowlist-change',
        { version: 'v2', previousVersion: null, added: ['p.example'], removed: [], changed: ['q.example'] },
      ],
      ['sequence-reset', { trustDomain: 'p.example', previousSequence: '9', operator: null }],
    ]);
  });
});
