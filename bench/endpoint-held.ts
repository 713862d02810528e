/**
 * Child process of bench/endpoint.bench.ts: prints the held-request figures as JSON on stdout.
 * Run with `node --expose-gc --import tsx bench/endpoint-held.ts`.
 */
import { heldFigures } from './endpoint.bench.js';

process.stdout.write(JSON.stringify(await heldFigures()));
