import { describe, expect, it } from "vitest";
import { mapBounded } from "../../src/app/run.js";

/** A task whose end the test decides: started tasks wait until released. */
function gate() {
  const waiting: Array<() => void> = [];
  let inFlight = 0;
  let peak = 0;
  const work = async (item: string) => {
    inFlight++;
    peak = Math.max(peak, inFlight);
    await new Promise<void>((r) => waiting.push(r));
    inFlight--;
    return item.toUpperCase();
  };
  const releaseAll = async () => {
    // bounded: each round releases what is waiting; at most one round per item
    for (let round = 0; round < 100 && (waiting.length > 0 || inFlight > 0); round++) {
      waiting.splice(0).forEach((r) => r());
      await new Promise((r) => setImmediate(r));
    }
  };
  return { work, releaseAll, started: () => waiting.length, peak: () => peak };
}

describe("mapBounded (targets renewed at once, renewal.concurrency)", () => {
  it("when there are more items than the limit, starts only `limit` at a time and keeps the items' order in the results", async () => {
    const g = gate();
    const done = mapBounded(["a", "b", "c", "d", "e"], 2, g.work);
    await new Promise((r) => setImmediate(r));
    expect(g.started()).toBe(2);
    await g.releaseAll();
    expect(await done).toEqual(["A", "B", "C", "D", "E"]);
    expect(g.peak()).toBe(2);
  });

  it("when the limit exceeds the items, starts them all at once", async () => {
    const g = gate();
    const done = mapBounded(["a", "b", "c"], 8, g.work);
    await new Promise((r) => setImmediate(r));
    expect(g.started()).toBe(3);
    await g.releaseAll();
    expect(await done).toEqual(["A", "B", "C"]);
  });

  it("when the limit is 1, runs one after another", async () => {
    const order: string[] = [];
    const out = await mapBounded(["x", "y", "z"], 1, async (i) => {
      order.push(`start ${i}`);
      await new Promise((r) => setImmediate(r));
      order.push(`end ${i}`);
      return i;
    });
    expect(out).toEqual(["x", "y", "z"]);
    expect(order).toEqual(["start x", "end x", "start y", "end y", "start z", "end z"]);
  });

  it("when there are no items, resolves to an empty list", async () => {
    expect(await mapBounded([], 4, async () => 1)).toEqual([]);
  });
});
