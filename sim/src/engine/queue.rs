//! The event queue: a heap of (µs, sequence, slot) over a slab of events, with superseded timers
//! swept out as the queue grows, and the trace hash every processed event is folded into.

use std::time::Duration;

use super::{Engine, Ev, Inst, Pod, PodId, us};

/// The smallest queue length at which `Engine::compact` runs.
pub(super) const COMPACT_MIN: usize = 1 << 14;

/// An event at (µs, sequence): the heap pops the earliest, ties in the order they were pushed. The
/// event itself waits in `Engine::slab` (the heap moves only these 24 bytes as it sifts).
pub(super) struct Scheduled {
    pub(super) t: u64,
    pub(super) seq: u64,
    pub(super) slot: u32,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.t, self.seq) == (o.t, o.seq)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Scheduled {
    /// Reversed: `BinaryHeap` is a max-heap.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.t, o.seq).cmp(&(self.t, self.seq))
    }
}

impl Engine {
    pub(super) fn push(&mut self, at: Duration, ev: Ev) {
        self.seq += 1;
        let t = us(at.max(self.now));
        let slot = match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = Some(ev);
                i
            }
            None => {
                self.slab.push(Some(ev));
                (self.slab.len() - 1) as u32
            }
        };
        self.queue.push(Scheduled { t, seq: self.seq, slot });
        if self.queue.len() >= self.compact_at {
            self.compact();
        }
    }

    /// Sweeps superseded timer events out of the queue. A lookup or resolver re-arms its timer at
    /// every send, and each re-arm leaves the old event behind to fire as a no-op seconds later, so
    /// most of a busy queue is dead weight that every push and pop pays for. Whenever the queue has
    /// doubled since the last sweep, the events whose timer was re-armed (or whose owner is gone) go.
    /// Deterministic: it depends only on the queue's contents.
    pub(super) fn compact(&mut self) {
        let (pods, insts, slab, free) = (&self.pods, &self.insts, &mut self.slab, &mut self.free);
        self.queue.retain(|s| {
            let live = slab[s.slot as usize].as_ref().is_some_and(|ev| !superseded(pods, insts, ev));
            if !live {
                slab[s.slot as usize] = None;
                free.push(s.slot);
            }
            live
        });
        self.compact_at = (2 * self.queue.len()).max(COMPACT_MIN);
    }

    pub(super) fn exp_gap(&mut self, pod: PodId) -> Duration {
        let rate = self.pods[pod].rate.max(1e-9);
        let u = self.rng.f64().max(1e-12);
        self.now + Duration::from_secs_f64(-u.ln() / rate)
    }

    pub(super) fn mix(&mut self, a: u64, b: u64) {
        for v in [a, b] {
            self.trace = (self.trace ^ v).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// A timer event whose timer has been re-armed since (or whose lookup ended, or whose instance died).
pub(super) fn superseded(pods: &[Pod], insts: &[Inst], ev: &Ev) -> bool {
    match ev {
        Ev::ClientTimer { pod, lookup, at } => pods.get(*pod).and_then(|p| p.lookups.get(lookup)).map(|l| l.timer) != Some(Some(*at)),
        Ev::InstTimer { inst, at } => insts.get(*inst).is_none_or(|i| i.timer != Some(*at) || !i.alive),
        _ => false,
    }
}
