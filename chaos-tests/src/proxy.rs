//! A fault-injecting TCP proxy in front of every node's peer port, and the [`Network`] that
//! decides which links are cut.
//!
//! # Why this shape
//! Each node advertises one peer address (`--advertise-peer`) that every other node dials, so a
//! proxy per (source, destination) pair is impossible: all sources dial the same address. The
//! proxy in front of node `d` therefore asks the kernel which process opened each incoming
//! connection ([`crate::socket_owner`]) and maps that pid to a node index. A link `s → d` is
//! blocked when the [`Network`] says so; blocking is directional, and partitions block both
//! directions of every pair that crosses the cut.
//!
//! Only the peer service is proxied: clients (the workload, the CLI) reach every node's client
//! port directly, so a minority node still answers its clients, which is what a partition looks
//! like to an application.
//!
//! # What a blocked link does
//! Like a network that drops packets, not one that refuses them: a new connection on a blocked
//! link is accepted and held without forwarding anything, and an established one stops
//! forwarding, so in-flight RPCs hang until the caller's timeout. When the link heals, held
//! connections are closed (their bytes are gone; an HTTP/2 stream cannot resume mid-frame), and
//! the callers reconnect. A caller the kernel cannot attribute is treated as blocked whenever
//! any link into the destination is, so an attribution failure can only make a partition
//! stricter, never silently absent; [`Network::unattributed_connections`] counts them.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};

use crate::socket_owner::owner_of_connection;

/// Longest a proxy waits to connect to the node behind it before closing the caller's
/// connection.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What one proxied connection does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    /// Bytes flow both ways.
    Forward,
    /// Nothing flows; both sockets stay open (a black hole).
    Hold,
    /// Close both sockets.
    Cut,
}

/// One proxied connection.
struct Link {
    /// The node that opened it, when the kernel could say.
    from: Option<usize>,
    /// The node behind the proxy.
    to: usize,
    /// Tells the connection's task what to do.
    state: watch::Sender<LinkState>,
    /// Stops the task at shutdown.
    task: AbortHandle,
}

#[derive(Default)]
struct NetworkState {
    /// Which node each running herald process is, to attribute incoming connections.
    owners: HashMap<u32, usize>,
    /// Directed pairs (from, to) whose connections are blocked.
    blocked: HashSet<(usize, usize)>,
    /// Live proxied connections by id.
    links: HashMap<u64, Link>,
    /// Id of the next link.
    next_link: u64,
    /// Connections accepted so far per (opener, destination), for diagnostics.
    seen: HashMap<(Option<usize>, usize), u64>,
}

impl NetworkState {
    /// Whether a connection from `from` to `to` may carry bytes now.
    fn is_blocked(&self, from: Option<usize>, to: usize) -> bool {
        match from {
            Some(from) => from != to && self.blocked.contains(&(from, to)),
            None => self.blocked.iter().any(|&(_, blocked_to)| blocked_to == to),
        }
    }

    /// Brings every link in line with `blocked`: forwarding links that are now blocked hold,
    /// held links that are no longer blocked are cut so that their callers reconnect.
    fn apply(&self) {
        for link in self.links.values() {
            let blocked = self.is_blocked(link.from, link.to);
            let current = *link.state.borrow();
            let next = match (current, blocked) {
                (LinkState::Forward, true) => LinkState::Hold,
                (LinkState::Hold, false) => LinkState::Cut,
                (state, _) => state,
            };
            if next != current {
                let _ = link.state.send(next);
            }
        }
    }
}

/// The simulated network between the nodes of one cluster: which links are blocked, shared by
/// every [`PeerProxy`] of the cluster.
#[derive(Clone, Default)]
pub struct Network {
    /// Shared with the proxies' tasks.
    state: Arc<Mutex<NetworkState>>,
}

impl Network {
    /// A network with every link open.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, NetworkState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records that process `pid` is node `node` (after every start, since restarts change it).
    pub fn set_owner(&self, pid: u32, node: usize) {
        self.lock().owners.insert(pid, node);
    }

    /// Forgets process `pid` (it exited).
    pub fn forget_owner(&self, pid: u32) {
        self.lock().owners.remove(&pid);
    }

    /// Blocks the directed link `from → to` (RPCs `from` starts never reach `to`).
    pub fn block(&self, from: usize, to: usize) {
        let mut state = self.lock();
        state.blocked.insert((from, to));
        state.apply();
    }

    /// Splits the nodes into `groups`: every link between two groups is blocked both ways.
    /// Nodes in no group keep their links.
    pub fn partition(&self, groups: &[Vec<usize>]) {
        let mut state = self.lock();
        for (index, group) in groups.iter().enumerate() {
            for other in groups.iter().skip(index + 1) {
                for &a in group {
                    for &b in other {
                        state.blocked.insert((a, b));
                        state.blocked.insert((b, a));
                    }
                }
            }
        }
        state.apply();
    }

    /// Cuts `node` off from every node in `others`, both ways.
    pub fn isolate(&self, node: usize, others: &[usize]) {
        let others: Vec<usize> = others.iter().copied().filter(|&o| o != node).collect();
        self.partition(&[vec![node], others]);
    }

    /// Opens every link again.
    pub fn heal(&self) {
        let mut state = self.lock();
        state.blocked.clear();
        state.apply();
    }

    /// Whether `from → to` is blocked now.
    pub fn is_blocked(&self, from: usize, to: usize) -> bool {
        self.lock().is_blocked(Some(from), to)
    }

    /// How many connections could not be attributed to a node (diagnostics: they were treated
    /// as blocked while any link into their destination was).
    pub fn unattributed_connections(&self) -> u64 {
        self.lock()
            .seen
            .iter()
            .filter(|((from, _), _)| from.is_none())
            .map(|(_, count)| count)
            .sum()
    }

    /// Connections accepted so far per (opener, destination); `None` is an opener the kernel
    /// could not name. Shows that peers really dial the proxies.
    pub fn connections_seen(&self) -> Vec<((Option<usize>, usize), u64)> {
        let mut seen: Vec<_> = self
            .lock()
            .seen
            .iter()
            .map(|(&pair, &count)| (pair, count))
            .collect();
        seen.sort();
        seen
    }

    /// Closes every proxied connection.
    pub fn shutdown(&self) {
        let mut state = self.lock();
        for (_, link) in state.links.drain() {
            link.task.abort();
        }
    }

    fn register(
        &self,
        from: Option<usize>,
        to: usize,
        task: AbortHandle,
    ) -> (u64, watch::Receiver<LinkState>) {
        let mut state = self.lock();
        let id = state.next_link;
        state.next_link += 1;
        *state.seen.entry((from, to)).or_default() += 1;
        let initial = if state.is_blocked(from, to) {
            LinkState::Hold
        } else {
            LinkState::Forward
        };
        let (sender, receiver) = watch::channel(initial);
        state.links.insert(
            id,
            Link {
                from,
                to,
                state: sender,
                task,
            },
        );
        (id, receiver)
    }

    fn unregister(&self, id: u64) {
        self.lock().links.remove(&id);
    }

    fn owners(&self) -> Vec<(u32, usize)> {
        self.lock()
            .owners
            .iter()
            .map(|(&pid, &node)| (pid, node))
            .collect()
    }
}

/// A TCP proxy listening on 127.0.0.1 in front of one node's peer port; the node advertises
/// the proxy's address to the others.
pub struct PeerProxy {
    /// The address the node advertises (`--advertise-peer`).
    pub listen_addr: SocketAddr,
    /// The node's real peer address (`--peer-listen`).
    pub upstream: SocketAddr,
    /// The accept loop, stopped on drop.
    accept_task: JoinHandle<()>,
}

impl PeerProxy {
    /// Starts a proxy for node `to`, whose peer service listens on `upstream`.
    pub async fn start(network: Network, to: usize, upstream: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let listen_addr = listener.local_addr()?;
        let accept_task = tokio::spawn(accept_loop(listener, network, to, upstream));
        Ok(Self {
            listen_addr,
            upstream,
            accept_task,
        })
    }
}

impl Drop for PeerProxy {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

async fn accept_loop(listener: TcpListener, network: Network, to: usize, upstream: SocketAddr) {
    let Ok(proxy_addr) = listener.local_addr() else {
        return;
    };
    loop {
        let Ok((inbound, caller)) = listener.accept().await else {
            // Out of file descriptors or similar: try again shortly rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let network = network.clone();
        // The task registers itself once it knows who called; the handle lets shutdown stop it.
        let (handle_sender, handle_receiver) = tokio::sync::oneshot::channel::<AbortHandle>();
        let task = tokio::spawn(async move {
            let Ok(abort) = handle_receiver.await else {
                return;
            };
            let owners = network.owners();
            let pids: Vec<u32> = owners.iter().map(|&(pid, _)| pid).collect();
            let from =
                tokio::task::spawn_blocking(move || owner_of_connection(caller, proxy_addr, &pids))
                    .await
                    .ok()
                    .flatten()
                    .and_then(|pid| owners.iter().find(|&&(p, _)| p == pid).map(|&(_, n)| n));
            let (id, state) = network.register(from, to, abort);
            run_link(inbound, upstream, state).await;
            network.unregister(id);
        });
        let _ = handle_sender.send(task.abort_handle());
    }
}

/// Carries one connection according to its state until it closes or is cut.
async fn run_link(
    mut inbound: TcpStream,
    upstream: SocketAddr,
    mut state: watch::Receiver<LinkState>,
) {
    let _ = inbound.set_nodelay(true);
    // Held from the start: the caller's connection exists but nothing answers.
    if *state.borrow_and_update() != LinkState::Forward {
        wait_for_cut(&mut state).await;
        return;
    }
    let connect = tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(upstream));
    let mut outbound = match connect.await {
        Ok(Ok(stream)) => stream,
        // The node is down: the caller sees its connection closed, as with a refused connect.
        _ => {
            let _ = inbound.shutdown().await;
            return;
        }
    };
    let _ = outbound.set_nodelay(true);
    let next = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
        next = next_state(&mut state) => next,
    };
    if next == LinkState::Hold {
        wait_for_cut(&mut state).await;
    }
}

/// The next state the network sets; `Cut` when the network is gone.
async fn next_state(state: &mut watch::Receiver<LinkState>) -> LinkState {
    loop {
        if state.changed().await.is_err() {
            return LinkState::Cut;
        }
        let current = *state.borrow_and_update();
        if current != LinkState::Forward {
            return current;
        }
    }
}

/// Waits while held, until the link is cut or the network is gone.
async fn wait_for_cut(state: &mut watch::Receiver<LinkState>) {
    while *state.borrow_and_update() != LinkState::Cut {
        if state.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// An echo server standing in for a node's peer port.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0u8; 1024];
                    while let Ok(n) = stream.read(&mut buffer).await {
                        if n == 0 || stream.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    /// Sends `ping` and waits briefly for the echo; `None` when nothing comes back.
    async fn round_trip(stream: &mut TcpStream) -> Option<Vec<u8>> {
        if stream.write_all(b"ping").await.is_err() {
            return None;
        }
        let mut buffer = [0u8; 4];
        match tokio::time::timeout(Duration::from_millis(300), stream.read_exact(&mut buffer)).await
        {
            Ok(Ok(_)) => Some(buffer.to_vec()),
            _ => None,
        }
    }

    /// Bytes flow through an open link; a partition turns the established connection into a
    /// black hole (no answer, no error), new connections are held as well, and after healing
    /// the held connection is closed and a new one works again. This test process is node 0.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn partition_holds_then_heal_cuts_and_reconnects() {
        let network = Network::new();
        network.set_owner(std::process::id(), 0);
        let proxy = PeerProxy::start(network.clone(), 1, echo_server().await)
            .await
            .unwrap();

        let mut established = TcpStream::connect(proxy.listen_addr).await.unwrap();
        assert_eq!(
            round_trip(&mut established).await.as_deref(),
            Some(&b"ping"[..])
        );

        network.partition(&[vec![0], vec![1]]);
        assert!(network.is_blocked(0, 1) && network.is_blocked(1, 0));
        assert_eq!(round_trip(&mut established).await, None);
        let mut fresh = TcpStream::connect(proxy.listen_addr).await.unwrap();
        assert_eq!(round_trip(&mut fresh).await, None);

        network.heal();
        let mut buffer = [0u8; 16];
        let closed = tokio::time::timeout(Duration::from_secs(5), fresh.read(&mut buffer))
            .await
            .expect("a healed link closes its held connections");
        assert!(matches!(closed, Ok(0) | Err(_)));
        let mut reconnected = TcpStream::connect(proxy.listen_addr).await.unwrap();
        assert_eq!(
            round_trip(&mut reconnected).await.as_deref(),
            Some(&b"ping"[..])
        );
        assert_eq!(network.unattributed_connections(), 0);
        assert_eq!(network.connections_seen(), vec![((Some(0), 1), 3)]);
        network.shutdown();
    }

    /// A block between two other nodes leaves this node's link alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocks_apply_only_to_their_pair() {
        let network = Network::new();
        network.set_owner(std::process::id(), 0);
        let proxy = PeerProxy::start(network.clone(), 1, echo_server().await)
            .await
            .unwrap();
        network.block(2, 1);
        let mut stream = TcpStream::connect(proxy.listen_addr).await.unwrap();
        assert_eq!(round_trip(&mut stream).await.as_deref(), Some(&b"ping"[..]));
        network.block(0, 1);
        assert_eq!(round_trip(&mut stream).await, None);
        network.shutdown();
    }

    /// A proxy whose node is down closes the caller's connection instead of hanging.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn down_node_closes_connections() {
        let network = Network::new();
        let unused = crate::ports::free_loopback_addr().unwrap();
        let proxy = PeerProxy::start(network.clone(), 1, unused).await.unwrap();
        let mut stream = TcpStream::connect(proxy.listen_addr).await.unwrap();
        let mut buffer = [0u8; 4];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .expect("closed promptly");
        assert!(matches!(read, Ok(0) | Err(_)));
        network.shutdown();
    }
}
