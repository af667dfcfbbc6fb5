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
                if k == 0 && same_real && !same_model && recycled(real, rj, model, mj) {
                    continue;
                }
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

/// A socket is known to the recorder by its source port, and the kernel hands a closed socket's
/// port out again: real packet `rj` on an earlier packet's port is a new socket when the real
/// library opened other sockets since that port's last use and the model's packet `mj` is on a
/// socket the model never used before (Go: one socket per query, closed after its answer). A library
/// that really went back to an old socket would have its model reuse one too.
fn recycled(real: &[Packet], rj: usize, model: &[Packet], mj: usize) -> bool {
    let port = real[rj].socket;
    let Some(prev) = real[..rj].iter().rposition(|p| p.socket == port) else { return false };
    let opened_since = real[prev + 1..rj].iter().any(|p| !real[..=prev].iter().any(|q| q.socket == p.socket));
    let fresh_in_model = !model[..mj].iter().any(|q| q.socket == model[mj].socket);
    opened_since && fresh_in_model
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

#[cfg(test)]
mod tests {
    use super::*;

    fn p(socket: u64, qtype: u16) -> Packet {
        Packet {
            at: std::time::Duration::ZERO,
            transport: sim::client::Transport::Udp,
            socket,
            server: "10.203.0.1".parse().expect("ip"),
            qname: format!("n{socket}."),
            qtype,
            edns: None,
        }
    }

    #[test]
    fn a_port_the_kernel_recycled_is_a_new_socket_but_real_reuse_is_not() {
        // Real: sockets 0, 1, 2, then port 0 again after 1 and 2 were opened; the model: a fresh socket.
        let real = [p(0, 1), p(1, 1), p(2, 1), p(0, 1)];
        let model = [p(0, 1), p(1, 1), p(2, 1), p(3, 1)];
        assert!(recycled(&real, 3, &model, 3));
        // The model reuses its socket too: nothing to excuse. Back-to-back on one port: no recycling.
        assert!(!recycled(&real, 3, &[p(0, 1), p(1, 1), p(2, 1), p(0, 1)], 3));
        assert!(!recycled(&[p(0, 1), p(0, 28)], 1, &[p(0, 1), p(1, 28)], 1));
    }
}
