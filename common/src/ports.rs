//! Ports for the servers a test or benchmark starts as processes (Fleetplane, Redis,
//! chromedriver), which must be chosen before the process binds them.
//!
//! Binding port 0 and releasing it gives a port from the kernel's ephemeral range, which every
//! outgoing connection draws from too: before the child binds it, a client's connection (a
//! benchmark opens 10,000) may take it, and the child fails with "Address already in use". So
//! these ports come from below that range, where the kernel never picks one by itself; each is
//! checked free, and no two calls in a process return the same one. Used by the control
//! plane's and the fleet's tests and benchmarks.

use std::{
    net::TcpListener,
    sync::atomic::{AtomicU32, Ordering},
};

/// The lowest port handed out: above the well-known and most registered services' ports.
const LOWEST: u32 = 10_000;

/// A loopback port that nothing listens on now, outside the ephemeral range.
pub fn free_port() -> u16 {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let (first_ephemeral, _) = ephemeral_range();
    let span = first_ephemeral.saturating_sub(LOWEST).max(1);
    // Processes that run at once (test binaries, a benchmark's servers) start apart.
    let start = std::process::id().wrapping_mul(7919) % span;
    let candidates = (0..span).map(|_| {
        let call = CALLS.fetch_add(1, Ordering::Relaxed);
        u16::try_from(LOWEST + (start + call) % span).expect("below the ephemeral range")
    });
    first_free(candidates).unwrap_or_else(|| panic!("no free loopback port between {LOWEST} and {first_ephemeral}"))
}

/// The first of `candidates` that can be bound on loopback now.
fn first_free(mut candidates: impl Iterator<Item = u16>) -> Option<u16> {
    candidates.find(|&port| TcpListener::bind(("127.0.0.1", port)).is_ok())
}

/// The kernel's ephemeral port range (`net.ipv4.ip_local_port_range`), or Linux's default.
fn ephemeral_range() -> (u32, u32) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut bounds = text.split_whitespace().map(|bound| bound.parse().ok());
            Some((bounds.next()??, bounds.next()??))
        })
        .unwrap_or((32_768, 60_999))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_free_distinct_and_outside_the_ephemeral_range() {
        let (first, last) = ephemeral_range();
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        for port in &ports {
            assert!(!(first..=last).contains(&u32::from(*port)), "{port} is in {first}..={last}");
            TcpListener::bind(("127.0.0.1", *port)).expect("free");
        }
        let mut distinct = ports.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), ports.len());
    }

    #[test]
    fn a_port_in_use_is_passed_over() {
        let held = TcpListener::bind(("127.0.0.1", free_port())).expect("bind");
        let taken = held.local_addr().expect("addr").port();
        let free = free_port();
        assert_eq!(first_free([taken, free].into_iter()), Some(free));
        assert_eq!(first_free([taken].into_iter()), None);
    }
}
