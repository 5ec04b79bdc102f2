//! A TCP proxy a test can cut and restore, to stage outages of PostgreSQL
//! or Redis for one component without touching the shared server; it can
//! also lose a reply (the request reached the server, the answer never came
//! back) and delay replies (a server that answers slowly).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Forwards connections from a local port to `target` while up.
#[derive(Debug)]
pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
    faults: Arc<Faults>,
    task: tokio::task::JoinHandle<()>,
}

/// What the proxy does to replies (server to client).
#[derive(Debug, Default)]
struct Faults {
    /// The next reply (on any connection) that contains these bytes is
    /// dropped with its connection.
    lose_reply: std::sync::Mutex<Option<Vec<u8>>>,
    /// Every reply is held this long before it is passed on.
    delay_ms: AtomicU64,
}

impl Proxy {
    /// Starts forwarding `127.0.0.1:<free port>` to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let up = Arc::new(AtomicBool::new(true));
        let (cut, cuts) = watch::channel(0_u64);
        let accepting = up.clone();
        let faults = Arc::new(Faults::default());
        let faulty = faults.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                if !accepting.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cuts = cuts.clone();
                // Only cuts after this connection was accepted end it.
                cuts.borrow_and_update();
                let faults = faulty.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut from_client, mut to_client) = inbound.into_split();
                    let (mut from_server, mut to_server) = outbound.into_split();
                    let requests = tokio::io::copy(&mut from_client, &mut to_server);
                    let replies = async {
                        let mut buffer = vec![0_u8; 64 * 1024];
                        loop {
                            let read = from_server.read(&mut buffer).await?;
                            if read == 0 {
                                return Ok::<(), std::io::Error>(());
                            }
                            let delay = faults.delay_ms.load(Ordering::SeqCst);
                            if delay > 0 {
                                tokio::time::sleep(Duration::from_millis(delay)).await;
                            }
                            if faults.take_lost_reply(&buffer[..read]) {
                                // Dropping both directions closes the connection.
                                return Ok(());
                            }
                            to_client.write_all(&buffer[..read]).await?;
                        }
                    };
                    tokio::select! {
                        _ = requests => {}
                        _ = replies => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            up,
            cut,
            faults,
            task,
        }
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.send_modify(|generation| *generation += 1);
    }

    /// The next reply the server sends, on any connection, that contains
    /// `pattern` (for PostgreSQL, a command tag such as `b"INSERT 0"`; empty:
    /// any reply) never reaches the client: the proxy closes that connection
    /// instead. The request itself was delivered (a statement ran, and
    /// committed).
    pub fn lose_next_reply_containing(&self, pattern: &[u8]) {
        if let Ok(mut lose) = self.faults.lose_reply.lock() {
            *lose = Some(pattern.to_vec());
        }
    }

    /// Holds every reply for `delay` before passing it on (zero: none).
    pub fn delay_replies(&self, delay: Duration) {
        self.faults
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// `url` with its host and port replaced by the proxy's.
    pub fn url_through(&self, url: &str) -> String {
        let mut parsed = url::Url::parse(url).expect("url");
        parsed.set_host(Some("127.0.0.1")).expect("host");
        parsed.set_port(Some(self.addr.port())).expect("port");
        parsed.to_string()
    }
}

impl Faults {
    /// True (once) if `reply` is the one to lose.
    fn take_lost_reply(&self, reply: &[u8]) -> bool {
        let Ok(mut lose) = self.lose_reply.lock() else {
            return false;
        };
        let matches = lose.as_deref().is_some_and(|pattern| {
            pattern.is_empty() || reply.windows(pattern.len()).any(|window| window == pattern)
        });
        if matches {
            *lose = None;
        }
        matches
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

/// The socket address a URL points at.
pub fn target_of(url: &str) -> SocketAddr {
    let parsed = url::Url::parse(url).expect("url");
    let host = parsed.host_str().expect("host");
    let port = parsed
        .port_or_known_default()
        .unwrap_or(match parsed.scheme() {
            "redis" => 6379,
            _ => 5432,
        });
    let host = if host == "localhost" {
        "127.0.0.1"
    } else {
        host
    };
    format!("{host}:{port}").parse().expect("socket address")
}
