//! Is the outside probe really outside? (pure)
//!
//! Carbonio's recipient restrictions permit `mynetworks` before the policy service is
//! consulted (docs/carbonio.md §2), and the default mynetworks covers the node's local
//! subnets: a probe "from the orchestrator" that Postfix sees as a mynetworks client can
//! never see a broken policy daemon. So the gate first finds the client address Postfix
//! logged for the probe's session (smtpd's `connect from NAME[ADDR]`, smtpd.c) and
//! matches it against `postconf -h mynetworks`; inside means "vantage invalid", never a
//! pass.

use std::net::IpAddr;

use crate::dns::spf::in_cidr;

/// The client addresses of `connect from NAME[ADDR]` lines.
pub fn logged_clients<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<IpAddr> {
    lines
        .into_iter()
        .filter_map(|l| {
            // `: connect from`, not the `disconnect from` summary line.
            let rest = &l[l.find(": connect from ")? + ": connect from ".len()..];
            let open = rest.find('[')?;
            let close = rest[open..].find(']')? + open;
            rest[open + 1..close].parse().ok()
        })
        .collect()
}

/// Which logged address is the probe's: the probe's own source address when Postfix
/// logged it, else the only address logged (a NAT between them); `None` when the log
/// cannot tell.
pub fn probe_client(logged: &[IpAddr], local: Option<IpAddr>) -> Option<IpAddr> {
    if let Some(l) = local.filter(|l| logged.contains(l)) {
        return Some(l);
    }
    let first = *logged.first()?;
    logged.iter().all(|a| *a == first).then_some(first)
}

/// Whether `ip` is in Postfix's `mynetworks` value (`net/len` and bare addresses, IPv6 in
/// brackets, separated by spaces or commas). `None` when it is not matched and the value
/// holds something this cannot evaluate (a hostname, a `/file` or `type:table` lookup),
/// which might match it.
pub fn in_mynetworks(ip: IpAddr, mynetworks: &str) -> Option<bool> {
    let mut undecidable = false;
    for tok in mynetworks
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
    {
        let (addr, len) = match tok.split_once('/') {
            Some((a, l)) => (a, l.parse::<u8>().ok()),
            None => (tok, None),
        };
        let addr = addr.trim_start_matches('[').trim_end_matches(']');
        let Ok(net) = addr.parse::<IpAddr>() else {
            undecidable = true;
            continue;
        };
        let max = if net.is_ipv4() { 32 } else { 128 };
        let len = match (tok.contains('/'), len) {
            (false, _) => max,
            (true, Some(l)) if l <= max => l,
            (true, _) => {
                undecidable = true;
                continue;
            }
        };
        if in_cidr(ip, net, len) {
            return Some(true);
        }
    }
    if undecidable { None } else { Some(false) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn mynetworks_as_postfix_writes_it() {
        let carbonio = "127.0.0.0/8 [::1]/128 10.1.0.0/16";
        assert_eq!(in_mynetworks(ip("127.0.0.1"), carbonio), Some(true));
        assert_eq!(in_mynetworks(ip("::1"), carbonio), Some(true));
        assert_eq!(in_mynetworks(ip("10.1.200.3"), carbonio), Some(true));
        assert_eq!(in_mynetworks(ip("203.0.113.9"), carbonio), Some(false));
        assert_eq!(
            in_mynetworks(ip("127.0.0.1"), "127.0.1.1/32, [::1]/128"),
            Some(false)
        );
        assert_eq!(in_mynetworks(ip("127.0.1.1"), "127.0.1.1"), Some(true));
        // A lookup table might hold it: undecidable unless something else matched.
        assert_eq!(
            in_mynetworks(ip("192.0.2.1"), "10.0.0.0/8 hash:/etc/nets"),
            None
        );
        assert_eq!(
            in_mynetworks(ip("10.0.0.1"), "10.0.0.0/8 hash:/etc/nets"),
            Some(true)
        );
    }

    #[test]
    fn the_probe_is_found_in_the_log() {
        let log = [
            "2026-12-02T04:00:00Z mx1 postfix/smtpd[41]: connect from unknown[127.0.0.1]",
            "2026-12-02T04:00:01Z mx1 postfix/smtpd[41]: disconnect from unknown[127.0.0.1] ehlo=1 quit=1",
            "2026-12-02T04:00:01Z mx1 postfix/smtpd[48]: connect from mail.example[2001:db8::5]",
        ];
        let logged = logged_clients(log);
        assert_eq!(logged, [ip("127.0.0.1"), ip("2001:db8::5")]);
        assert_eq!(
            probe_client(&logged, Some(ip("2001:db8::5"))),
            Some(ip("2001:db8::5"))
        );
        // Ours is not there (NAT): only an unambiguous log tells.
        assert_eq!(probe_client(&logged, Some(ip("192.0.2.7"))), None);
        assert_eq!(
            probe_client(&logged[..1], Some(ip("192.0.2.7"))),
            Some(ip("127.0.0.1"))
        );
        assert_eq!(probe_client(&[], None), None);
    }
}
