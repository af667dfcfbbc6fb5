//! Unit and property tests of the conntrack table.

use super::*;

#[test]
fn a_flow_refreshed_twice_in_one_instant_is_one_entry_and_one_deletion() {
    let mut ct = Conntrack::new(Config::for_kernel(Kernel::new(5, 15), 100));
    let mut rng = fastrand::Rng::with_seed(1);
    let t = Tuple::udp("10.0.0.5:40000".parse().expect("addr"), "10.96.0.10:53".parse().expect("addr"));
    let now = Duration::from_secs(1);
    let _ = ct.confirm(now, ct.begin(t, "10.244.0.2:53".parse().expect("addr")), None, &mut rng);
    ct.touch(now, t, false);
    ct.touch(now, t, false);
    assert_eq!(ct.entries().count(), 1);
    assert_eq!(ct.delete_nat("10.96.0.10:53".parse().expect("addr"), "10.244.0.2".parse().expect("ip"), Proto::Udp), 1);
}
use proptest::prelude::*;

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Sends one new-flow packet through begin+confirm.
fn new_flow(ct: &mut Conntrack, now: Duration, t: Tuple, target: SocketAddr) -> Verdict {
    let p = ct.begin(t, target);
    ct.confirm(now, p, None, &mut fastrand::Rng::with_seed(1))
}

#[test]
fn table_size_follows_kube_proxy() {
    assert_eq!(kube_proxy_max(2, 32768, 131072), 131072);
    assert_eq!(kube_proxy_max(4, 32768, 131072), 131072);
    assert_eq!(kube_proxy_max(16, 32768, 131072), 524288);
}

#[test]
fn a_single_query_and_reply_stays_at_30s_on_every_kernel() {
    for k in [Kernel::new(4, 15), Kernel::new(5, 4), Kernel::new(6, 1)] {
        let mut ct = Conntrack::new(Config::for_kernel(k, 1000));
        let t = Tuple::udp(sa("10.0.0.5:40000"), sa("10.96.0.10:53"));
        new_flow(&mut ct, secs(0.0), t, sa("10.244.0.2:53"));
        let (orig, is_reply) = ct.lookup(secs(0.001), &Tuple::udp(sa("10.244.0.2:53"), sa("10.0.0.5:40000"))).expect("reply matches");
        assert!(is_reply);
        ct.touch(secs(0.001), orig, true);
        let e = ct.get(&t).expect("entry");
        assert_eq!(e.expires, secs(30.001), "kernel {k}");
        assert!(!e.assured);
    }
}

#[test]
fn the_four_packet_same_socket_exchange_goes_stream_before_5_0() {
    // A and AAAA from one socket, then both replies: the 4th packet sees SEEN_REPLY (sources.md#conntrack-udp-timeouts).
    let run = |k: Kernel, gap: f64| {
        let mut ct = Conntrack::new(Config::for_kernel(k, 1000));
        let t = Tuple::udp(sa("10.0.0.5:40000"), sa("10.96.0.10:53"));
        new_flow(&mut ct, secs(0.0), t, sa("10.244.0.2:53"));
        ct.touch(secs(0.00002), t, false);
        ct.touch(secs(0.001), t, true);
        ct.touch(secs(0.001 + gap), t, true);
        ct.get(&t).cloned().expect("entry")
    };
    let old = run(Kernel::new(4, 19), 0.0001);
    assert_eq!(old.expires - secs(0.0011), Duration::from_secs(180));
    assert!(old.assured);
    // 5.0: within the first 2 s the flow stays at 30 s (d535c8a69c19) but is ASSURED until 5.16.
    let new = run(Kernel::new(5, 4), 0.0001);
    assert_eq!(new.expires - secs(0.0011), Duration::from_secs(30));
    assert!(new.assured);
    let newest = run(Kernel::new(5, 16), 0.0001);
    assert!(!newest.assured, "5.16: ASSURED only in stream mode");
    // A reply arriving after 2 s does enter stream mode on 5.x: 120 s.
    let late = run(Kernel::new(5, 4), 2.5);
    assert_eq!(late.expires - secs(2.501), Duration::from_secs(120));
}

#[test]
fn a_race_3_loser_gets_its_reply_un_nated_for_one_second() {
    // 6a757c07e51f (5.6): the loser is inserted for replies only (IPS_NAT_CLASH), 1 s; before
    // c46172147ebb (5.9) its first reply deleted it, so a second reply was lost.
    let t = Tuple::udp(sa("10.0.0.5:40000"), sa("10.96.0.10:53"));
    let (a, b) = (sa("10.244.0.2:53"), sa("10.244.1.2:53"));
    let from_b = Tuple::udp(b, sa("10.0.0.5:40000"));
    for (k, second_reply) in [(Kernel::new(5, 6), false), (Kernel::new(5, 10), true)] {
        let mut ct = Conntrack::new(Config::for_kernel(k, 1000));
        let mut rng = fastrand::Rng::with_seed(3);
        let (pa, pb) = (ct.begin(t, a), ct.begin(t, b));
        ct.confirm(secs(0.0), pa, None, &mut rng);
        assert_eq!(ct.confirm(secs(0.00001), pb, Some(Race::DifferentTargets), &mut rng), Verdict::Accept { to: b });
        assert_eq!((ct.len(), ct.clash_entries(secs(0.001))), (1, 1), "the loser is not an original-direction entry");
        assert_eq!(ct.lookup(secs(0.002), &from_b), Some((t, true)), "{k}: the loser's reply is un-NATed to the VIP");
        assert_eq!(ct.lookup(secs(0.003), &from_b).is_some(), second_reply, "{k}");
    }
    // It lasts 1 s, and kube-proxy's delete for the loser's endpoint removes it.
    let mut ct = Conntrack::new(Config::for_kernel(Kernel::new(5, 10), 1000));
    let mut rng = fastrand::Rng::with_seed(3);
    let (pa, pb) = (ct.begin(t, a), ct.begin(t, b));
    ct.confirm(secs(0.0), pa, None, &mut rng);
    ct.confirm(secs(0.0), pb, Some(Race::DifferentTargets), &mut rng);
    assert!(ct.lookup(secs(0.999), &from_b).is_some());
    assert!(ct.lookup(secs(1.0), &from_b).is_none(), "NAT_CLASH_TIMEOUT");
    let (pa, pb) = (ct.begin(t, a), ct.begin(t, b));
    ct.delete_dst(sa("10.96.0.10:53").ip(), Proto::Udp);
    ct.confirm(secs(2.0), pa, None, &mut rng);
    ct.confirm(secs(2.0), pb, Some(Race::DifferentTargets), &mut rng);
    ct.delete_nat(sa("10.96.0.10:53"), b.ip(), Proto::Udp);
    assert!(ct.lookup(secs(2.1), &from_b).is_none(), "conntrack -D --dst-nat matches the clash entry");
    assert!(ct.lookup(secs(2.1), &Tuple::udp(a, sa("10.0.0.5:40000"))).is_some(), "the winner stays");
}

#[test]
fn the_insertion_race_drops_by_kernel_version() {
    let cases = [
        (Kernel::new(4, 15), [true, true, true]),
        (Kernel::new(4, 19), [false, true, true]),
        (Kernel::new(5, 0), [false, false, true]),
        (Kernel::new(5, 10), [false, false, false]),
    ];
    for (k, drops) in cases {
        for (race, expect) in [Race::SameTarget, Race::ReplyTupleTaken, Race::DifferentTargets].into_iter().zip(drops) {
            let mut ct = Conntrack::new(Config::for_kernel(k, 1000));
            let t = Tuple::udp(sa("10.0.0.5:40000"), sa("10.96.0.10:53"));
            let mut rng = fastrand::Rng::with_seed(3);
            let a = ct.begin(t, sa("10.244.0.2:53"));
            let target_b = if race == Race::DifferentTargets { sa("10.244.1.2:53") } else { sa("10.244.0.2:53") };
            let b = ct.begin(t, target_b);
            assert_eq!(ct.confirm(secs(0.0), a, None, &mut rng), Verdict::Accept { to: sa("10.244.0.2:53") });
            let v = ct.confirm(secs(0.00001), b, Some(race), &mut rng);
            assert_eq!(v == Verdict::InsertFailed, expect, "kernel {k} {race:?}: {v:?}");
            assert_eq!(ct.counters.insert_failed, u64::from(expect));
            assert_eq!(ct.len(), 1);
        }
    }
}

#[test]
fn a_queued_race_drops_until_the_6_12_nfqueue_fix() {
    // A policy agent's NFQUEUE: the loser is dropped before 8af79d3edb5f (6.12) even where the kernel
    // resolves the same race without a queue, and resolved from 6.12 (kernel-check measures 6.18).
    for (k, drops) in [(Kernel::new(5, 15), true), (Kernel::new(6, 6), true), (Kernel::new(6, 12), false), (Kernel::new(6, 18), false)] {
        let mut ct = Conntrack::new(Config { nfqueue: true, ..Config::for_kernel(k, 1000) });
        let t = Tuple::udp(sa("10.0.0.5:40000"), sa("10.96.0.10:53"));
        let mut rng = fastrand::Rng::with_seed(3);
        let (a, b) = (ct.begin(t, sa("10.244.0.2:53")), ct.begin(t, sa("10.244.0.2:53")));
        assert_eq!(ct.confirm(secs(0.0), a, None, &mut rng), Verdict::Accept { to: sa("10.244.0.2:53") });
        let v = ct.confirm(secs(0.00001), b, Some(Race::SameTarget), &mut rng);
        assert_eq!(v == Verdict::InsertFailed, drops, "kernel {k}: {v:?}");
        assert_eq!(ct.counters.insert_failed, u64::from(drops), "kernel {k}");
    }
}

#[test]
fn a_full_table_early_drops_unassured_entries_then_drops_new_flows() {
    let mut ct = Conntrack::new(Config::for_kernel(Kernel::new(4, 19), 2));
    let mut rng = fastrand::Rng::with_seed(1);
    let a = Tuple::udp(sa("10.0.0.5:40000"), sa("10.96.0.10:53"));
    let b = Tuple::udp(sa("10.0.0.5:40001"), sa("10.96.0.10:53"));
    let c = Tuple::udp(sa("10.0.0.5:40002"), sa("10.96.0.10:53"));
    new_flow(&mut ct, secs(0.0), a, a.dst);
    new_flow(&mut ct, secs(0.0), b, b.dst);
    assert!(matches!(ct.confirm(secs(1.0), ct.begin(c, c.dst), None, &mut rng), Verdict::Accept { .. }));
    assert_eq!(ct.counters.early_drop, 1);
    // Make both remaining entries ASSURED (4-packet exchanges): now a new flow is refused.
    for t in [b, c] {
        ct.touch(secs(1.0), t, true);
        ct.touch(secs(1.0), t, true);
    }
    let d = Tuple::udp(sa("10.0.0.5:40003"), sa("10.96.0.10:53"));
    assert_eq!(ct.confirm(secs(1.0), ct.begin(d, d.dst), None, &mut rng), Verdict::TableFull);
    assert_eq!(ct.counters.drop, 1);
}

#[test]
fn kube_proxy_cleanup_deletes_entries_to_a_removed_endpoint() {
    let mut ct = Conntrack::new(Config::for_kernel(Kernel::new(5, 10), 100));
    for (port, target) in [(40000, "10.244.0.2:53"), (40001, "10.244.1.2:53"), (40002, "10.244.0.2:53")] {
        new_flow(&mut ct, secs(0.0), Tuple::udp(SocketAddr::new([10, 0, 0, 5].into(), port), sa("10.96.0.10:53")), sa(target));
    }
    assert_eq!(ct.delete_nat(sa("10.96.0.10:53"), "10.244.0.2".parse().expect("ip"), Proto::Udp), 2);
    assert_eq!(ct.len(), 1);
}

proptest! {
    /// Whatever the packet sequence: the table never exceeds its size, indexes stay consistent,
    /// and every entry expires no later than the longest timeout after its last packet.
    #[test]
    fn invariants_hold_for_any_packet_sequence(
        kernel in prop_oneof![Just(Kernel::new(4, 14)), Just(Kernel::new(4, 19)), Just(Kernel::new(5, 4)), Just(Kernel::new(5, 16))],
        max in 1usize..20,
        ops in proptest::collection::vec((0u16..30, 0u8..3, 0u32..5000), 1..200),
    ) {
        let mut ct = Conntrack::new(Config::for_kernel(kernel, max));
        let mut rng = fastrand::Rng::with_seed(9);
        let mut now = Duration::ZERO;
        for (port, kind, dt_ms) in ops {
            now += Duration::from_millis(u64::from(dt_ms));
            let t = Tuple::udp(SocketAddr::new([10, 0, 0, 5].into(), 40000 + port), sa("10.96.0.10:53"));
            match kind {
                0 => { if ct.lookup(now, &t).is_none() { let _ = ct.confirm(now, ct.begin(t, sa("10.244.0.2:53")), None, &mut rng); } }
                1 => { if let Some((o, _)) = ct.lookup(now, &t) { ct.touch(now, o, false); } }
                _ => { if let Some((o, _)) = ct.lookup(now, &t.reversed()).or_else(|| ct.lookup(now, &Tuple::udp(sa("10.244.0.2:53"), t.src))) { ct.touch(now, o, true); } }
            }
            prop_assert!(ct.len() <= max);
            prop_assert_eq!(ct.entries.len(), ct.replies.len());
            prop_assert_eq!(ct.entries.len(), ct.entries().count(), "every entry has its expiry position");
            prop_assert!(ct.by_expiry.len() >= ct.entries.len());
            let unassured: Vec<Key> = ct.entries().filter(|e| !e.assured).map(|e| Key::of(&e.orig)).collect();
            for k in &unassured {
                let e = &ct.entries[k];
                prop_assert!(ct.unassured.positions().any(|(at, x)| x == *k && at == e.expires), "early drop can find every non-ASSURED entry");
            }
            for e in ct.entries() {
                prop_assert!(e.expires >= now);
                prop_assert!(e.expires <= now + Duration::from_secs(180));
            }
        }
    }
}
