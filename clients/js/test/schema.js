// The JSON Schemas of docs/schema/, compiled once: every frame the SDK's server tests send or
// receive is checked against them, so the schemas stay the truth about what is on the wire.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import Ajv2020 from 'ajv/dist/2020.js';

const dir = fileURLToPath(new URL('../../../docs/schema/', import.meta.url));
const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false });
const load = (name) => ajv.compile(JSON.parse(readFileSync(dir + name, 'utf8')));
const validators = { server: load('server-frames.json'), client: load('client-frames.json') };

/** Frames checked so far by side, and the ones that did not match (with ajv's errors). */
export const seen = { server: new Set(), client: new Set() };
export const violations = [];

/** Checks one frame; returns true when it matches its side's schema. */
export function check(side, frame) {
  const ok = validators[side](frame);
  seen[side].add(frame?.type);
  if (!ok) violations.push({ side, frame, errors: validators[side].errors });
  return ok;
}

/** Whether a frame matches, without recording anything (for the schema's own tests). */
export function matches(side, frame) {
  return validators[side](frame);
}
