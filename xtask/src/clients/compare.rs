//! Matching the real library's packets with the model's.

use super::recorder::Packet;
use super::{SILENT, TOLERANCE};

/// Matches real packets to model packets; the differences, if any.
pub(super) fn compare(real: &[Packet], model: &[Packet]) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut used = vec![false; model.len()];
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    for (i, r) in real.iter().enumerate() {
        let silent = |p: &Packet| p.server.to_string() == SILENT;
        let fits = |j: usize, m: &Packet| !used[j] && m.key() == r.key() && silent(m) == silent(r) && m.at.abs_diff(r.at) <= TOLERANCE;
        // The same nameserver if the model has one such packet (musl asks all at once), else any.
        let m = model
            .iter()
            .enumerate()
            .find(|&(j, m)| fits(j, m) && m.server == r.server)
            .or_else(|| model.iter().enumerate().find(|&(j, m)| fits(j, m)));
        match m {
            Some((j, _)) => {
                used[j] = true;
                pairs.push((i, j));
            }
            None => diffs.push(format!("real packet {} has no model counterpart", i + 1)),
        }
    }
    for (j, u) in used.iter().enumerate() {
        if !u {
            diffs.push(format!("model packet {} was not sent by the real library", j + 1));
        }
    }
    for (a, &(ri, mi)) in pairs.iter().enumerate() {
        for &(rj, mj) in &pairs[a + 1..] {
            // Which socket, and which nameserver (the same one or another: glibc's `rotate` starts at
            // a random one), must agree pair by pair.
            let same = |x: &Packet, y: &Packet| [x.socket == y.socket, x.server == y.server];
            let (real_same, model_same) = (same(&real[ri], &real[rj]), same(&model[mi], &model[mj]));
            for (k, what) in ["socket", "nameserver"].into_iter().enumerate() {
                let (same_real, same_model) = (real_same[k], model_same[k]);
                if same_real != same_model {
                    let word = |same: bool| if same { "one" } else { "different" };
                    diffs.push(format!(
                        "packets {} and {}: {} {what} for the real library, {} in the model",
                        ri + 1,
                        rj + 1,
                        word(same_real),
                        word(same_model)
                    ));
                }
            }
        }
    }
    diffs
}

/// Whether both sides sent some name in mixed case (0x20), then both with names lower-cased.
pub(super) fn case_free(mut real: Vec<Packet>, mut model: Vec<Packet>, diffs: &mut Vec<String>) -> (Vec<Packet>, Vec<Packet>) {
    let mixed = |p: &[Packet]| p.iter().any(|x| x.qname.bytes().any(|b| b.is_ascii_uppercase()));
    if mixed(&real) != mixed(&model) {
        diffs.push(format!("random case (0x20): real {}, model {}", mixed(&real), mixed(&model)));
    }
    for p in real.iter_mut().chain(model.iter_mut()) {
        p.qname.make_ascii_lowercase();
    }
    (real, model)
}

pub(super) fn numbering(p: &[Packet]) -> Vec<u64> {
    let mut v = Vec::new();
    for x in p {
        if !v.contains(&x.socket) {
            v.push(x.socket);
        }
    }
    v
}
