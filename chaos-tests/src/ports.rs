//! Ports for nodes that must keep them across restarts. They are taken below the kernel's
//! ephemeral range, so that no outgoing connection can occupy a node's port while it is down,
//! and checked free by binding them.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};

/// Lowest port handed out.
const LOWEST: u32 = 10_000;

/// The next candidate, offset by the process id so that concurrent test processes start apart.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// A loopback address whose port is free now and outside the ephemeral range.
pub fn free_loopback_addr() -> anyhow::Result<SocketAddr> {
    let highest = ephemeral_start().saturating_sub(1).max(LOWEST + 1_000);
    let span = highest - LOWEST;
    let _ = NEXT.compare_exchange(
        0,
        std::process::id().wrapping_mul(7_919) % span + 1,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span {
        let offset = NEXT.fetch_add(1, Ordering::SeqCst) % span;
        let port = u16::try_from(LOWEST + offset).expect("ports stay below 65536");
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        if TcpListener::bind(addr).is_ok() {
            return Ok(addr);
        }
    }
    anyhow::bail!("no free loopback port between {LOWEST} and {highest}")
}

/// The first port of the kernel's ephemeral range (Linux: `ip_local_port_range`).
fn ephemeral_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Successive calls give distinct ports that can be bound.
    #[test]
    fn ports_are_distinct_and_free() {
        let first = free_loopback_addr().unwrap();
        let second = free_loopback_addr().unwrap();
        assert_ne!(first, second);
        TcpListener::bind(first).unwrap();
        assert!(u32::from(first.port()) < ephemeral_start());
    }
}
