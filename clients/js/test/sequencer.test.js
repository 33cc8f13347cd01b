// The held-mark algorithm alone: what may be reported as `received`, and which holes are real.
import test from 'node:test';
import assert from 'node:assert/strict';
import { Sequencer } from '../src/index.js';

test('in-order frames advance held; repeats are not fresh', () => {
  const s = new Sequencer();
  s.start('c', 0);
  assert.deepEqual(s.receive('c', 1), { fresh: true, hole: null });
  assert.deepEqual(s.receive('c', 2), { fresh: true, hole: null });
  assert.equal(s.held('c'), 2);
  assert.equal(s.receive('c', 2).fresh, false);
  assert.equal(s.receive('c', 1).fresh, false);
  assert.equal(s.held('c'), 2);
});

test('start never moves held backwards', () => {
  const s = new Sequencer();
  s.start('c', 7);
  s.start('c', 3);
  assert.equal(s.held('c'), 7);
  assert.equal(s.receive('c', 5).fresh, false);
});

test('an ack ahead of owed messages does not move held past them', () => {
  const s = new Sequencer();
  s.start('c', 5);
  s.ack('c', 10); // our send, acknowledged before the server replayed 6..9
  assert.equal(s.held('c'), 5, 'held must not jump to the ack');
  assert.deepEqual(s.holes(), [{ conversationId: 'c', from: 6, to: 9 }]);
  for (const seq of [6, 7, 8]) {
    assert.deepEqual(s.receive('c', seq), { fresh: true, hole: null });
  }
  assert.equal(s.held('c'), 8);
  assert.equal(s.receive('c', 9).fresh, true);
  assert.equal(s.held('c'), 10, 'the ack is folded in once everything below it arrived');
  assert.equal(s.receive('c', 10).fresh, false, 'our own message replayed by sync is not new');
  assert.deepEqual(s.holes(), []);
});

test('an ack right after held moves it at once', () => {
  const s = new Sequencer();
  s.start('c', 4);
  s.ack('c', 5);
  assert.equal(s.held('c'), 5);
});

test('a frame above a hole reports the hole and waits for settle', () => {
  const s = new Sequencer();
  s.start('c', 3);
  assert.deepEqual(s.receive('c', 6), { fresh: true, hole: { from: 4, to: 5 } });
  assert.equal(s.held('c'), 3, 'nothing past the hole is received yet');
  assert.deepEqual(s.receive('c', 7), { fresh: true, hole: { from: 4, to: 5 } });
  s.settle('c', 5);
  assert.equal(s.held('c'), 7, 'held runs through what had arrived above the hole');
  assert.deepEqual(s.holes(), []);
});

test('a message filling a hole before it is settled is fresh, and the hole shrinks', () => {
  const s = new Sequencer();
  s.start('c', 0);
  s.receive('c', 3);
  assert.deepEqual(s.receive('c', 1), { fresh: true, hole: null });
  assert.deepEqual(s.holes(), [{ conversationId: 'c', from: 2, to: 2 }]);
  s.receive('c', 2);
  assert.equal(s.held('c'), 3);
});

test('conversations are independent', () => {
  const s = new Sequencer();
  s.start('a', 2);
  s.start('b', 9);
  s.receive('a', 3);
  assert.equal(s.held('a'), 3);
  assert.equal(s.held('b'), 9);
  assert.equal(s.has('a'), true);
  assert.equal(s.has('z'), false);
});
