//! Which process opened a loopback TCP connection. Every node advertises one peer address, so a
//! proxy in front of a node cannot tell its callers apart by the address they dialled; it can by
//! asking the kernel who owns the other end: the connection's client socket is listed in
//! `/proc/net/tcp` with its inode, and the owning process holds that inode in `/proc/PID/fd`.
//! Linux only; elsewhere the owner is unknown and the proxy treats the caller conservatively.

use std::net::{Ipv4Addr, SocketAddr};

/// The process among `candidates` that owns the client end of the loopback connection
/// `client` → `server` (as seen by the server: `client` is the accepted socket's peer address).
pub fn owner_of_connection(
    client: SocketAddr,
    server: SocketAddr,
    candidates: &[u32],
) -> Option<u32> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let inode = socket_inode(&table, client, server)?;
    let link = format!("socket:[{inode}]");
    candidates
        .iter()
        .copied()
        .find(|&pid| process_holds(pid, &link))
}

/// The inode of the socket whose local address is `local` and remote address is `remote`, from
/// the text of `/proc/net/tcp`.
fn socket_inode(table: &str, local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 10 {
            continue;
        }
        if parse_addr(fields[1]) == Some(local) && parse_addr(fields[2]) == Some(remote) {
            let inode: u64 = fields[9].parse().ok()?;
            // Inode 0: a socket in TIME_WAIT, owned by nobody any more.
            return (inode != 0).then_some(inode);
        }
    }
    None
}

/// `0100007F:1F90` → 127.0.0.1:8080. The kernel prints the address as the 32-bit word in
/// network byte order read as a native integer, and the port as a plain number.
fn parse_addr(text: &str) -> Option<SocketAddr> {
    let (ip_hex, port_hex) = text.split_once(':')?;
    if ip_hex.len() != 8 {
        return None;
    }
    let word = u32::from_str_radix(ip_hex, 16).ok()?;
    let port = u16::from_str_radix(port_hex, 16).ok()?;
    Some(SocketAddr::from((Ipv4Addr::from(word.to_ne_bytes()), port)))
}

fn process_holds(pid: u32, link: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    entries.flatten().any(|entry| {
        std::fs::read_link(entry.path())
            .map(|target| target.as_os_str() == link)
            .unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's hexadecimal notation decodes to the loopback address and port.
    #[test]
    fn parses_proc_net_tcp_addresses() {
        if cfg!(target_endian = "little") {
            assert_eq!(
                parse_addr("0100007F:1F90"),
                Some("127.0.0.1:8080".parse().unwrap())
            );
        }
        assert_eq!(parse_addr("zz"), None);
    }

    /// A connection this process opened is attributed to this process and to no other.
    #[test]
    fn finds_the_process_that_opened_a_connection() {
        if !std::path::Path::new("/proc/net/tcp").exists() {
            return;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(server).unwrap();
        let (_accepted, client_addr) = listener.accept().unwrap();
        let me = std::process::id();
        assert_eq!(owner_of_connection(client_addr, server, &[1, me]), Some(me));
        assert_eq!(owner_of_connection(client_addr, server, &[1]), None);
    }
}
