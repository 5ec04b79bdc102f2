//! How the broker reaches Redis: one server, or a Redis Cluster.
//!
//! Every script and multi-key command touches the keys of one queue, which
//! share a hash tag, so it runs on one cluster slot. What differs on a
//! cluster is how commands travel:
//! - pooled connections are redis-rs cluster connections: they follow
//!   `MOVED`/`ASK` redirections themselves, with bounded retries and
//!   timeouts (see [`CLUSTER_REQUEST_TIMEOUT`]); one that met a timeout or
//!   a redirection leaves the pool, so that its replacement reads the
//!   cluster's slots afresh (see [`Pooled`]);
//! - commands that span slots (a publish to several queues, depths read
//!   across queues) go as a [`Batch`]: one pipeline on a single server, one
//!   pipeline per slot, all sent at once, on a cluster (which refuses a
//!   pipeline that spans slots);
//! - a blocking pop runs on a cluster connection of its own, whose response
//!   timeout outlasts the block; the cluster routes it to the node owning
//!   the queue's slot;
//! - cancel notices use RESP3 pub/sub through a cluster connection (cluster
//!   pub/sub reaches every node), which pings now and then and ends the
//!   subscription when a node does not answer, to be made afresh.

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use deadpool::managed;
use futures::{Stream, StreamExt};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::{Cmd, FromRedisValue, RedisError, RedisFuture, Value};

use super::{BrokerError, CONNECT_TIMEOUT};

/// How long one request to a cluster may take in all, redirections and
/// retries included. A failover takes the cluster's `cluster-node-timeout`
/// and an election; callers retry (or, for the API, leave publishing to
/// the reconciler) rather than hang through it.
pub const CLUSTER_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one attempt of a request to a cluster node may take.
const CLUSTER_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a cluster subscription checks that its nodes answer.
const SUBSCRIPTION_CHECK: Duration = Duration::from_secs(5);
/// Retries of one cluster request (after a redirection, a refused
/// connection or a timeout), waiting 10 to 500 ms between them.
const CLUSTER_RETRIES: u32 = 8;

/// Where Redis is: one server, or a cluster reached through seed nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisAddress {
    /// One server's URL.
    Single(String),
    /// The URLs of one or more of the cluster's nodes; the client learns
    /// the rest from them.
    Cluster(Vec<String>),
}

impl RedisAddress {
    /// `REDIS_URL` as given: with `cluster`, one or several node URLs
    /// separated by commas (a comma in a password is then written `%2C`).
    pub fn new(url: &str, cluster: bool) -> Result<Self, BrokerError> {
        if cluster {
            let seeds: Vec<String> = url
                .split(',')
                .map(str::trim)
                .filter(|seed| !seed.is_empty())
                .map(str::to_owned)
                .collect();
            if seeds.is_empty() {
                return Err(BrokerError::Config(
                    "REDIS_URL names no cluster node".to_owned(),
                ));
            }
            Ok(RedisAddress::Cluster(seeds))
        } else {
            Ok(RedisAddress::Single(url.to_owned()))
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisAddress::Cluster(_))
    }
}

/// A cluster client whose requests wait up to `attempt` for each node's
/// answer and give up after `timeout` in all.
fn cluster_client(seeds: &[String], attempt: Duration, timeout: Duration) -> ClusterClientBuilder {
    ClusterClient::builder(seeds.iter().map(String::as_str))
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(attempt)
        .overall_response_timeout(Some(timeout))
        .retries(CLUSTER_RETRIES)
        .min_retry_wait(10)
        .max_retry_wait(500)
}

/// Makes cluster connections for the pool. A pooled one is never pinged
/// on checkout (a cluster connection reconnects to nodes by itself, and
/// [`Pooled`] drops one whose view may be stale): deadpool-redis's own
/// cluster manager pings every master on every checkout and builds its
/// client with redis-rs's defaults (no response timeout, retries waiting
/// seconds each), which would stall a request for minutes during a
/// failover.
pub struct ClusterManager {
    client: ClusterClient,
}

impl std::fmt::Debug for ClusterManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterManager").finish_non_exhaustive()
    }
}

impl managed::Manager for ClusterManager {
    type Type = ClusterConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<ClusterConnection, RedisError> {
        self.client.get_async_connection().await
    }

    async fn recycle(
        &self,
        _: &mut ClusterConnection,
        _: &managed::Metrics,
    ) -> managed::RecycleResult<RedisError> {
        Ok(())
    }
}

/// Pooled connections of either kind.
#[derive(Clone)]
pub(crate) enum Pool {
    Single(deadpool_redis::Pool),
    Cluster(managed::Pool<ClusterManager>),
}

impl Pool {
    /// At most `size` connections; connects lazily.
    pub(crate) fn new(address: &RedisAddress, size: usize) -> Result<Self, BrokerError> {
        let timeouts = deadpool_redis::Timeouts {
            wait: Some(CONNECT_TIMEOUT),
            create: Some(CONNECT_TIMEOUT),
            recycle: Some(CONNECT_TIMEOUT),
        };
        match address {
            RedisAddress::Single(url) => {
                let mut config = deadpool_redis::Config::from_url(url);
                config.pool = Some(deadpool_redis::PoolConfig {
                    max_size: size,
                    timeouts,
                    ..deadpool_redis::PoolConfig::default()
                });
                let pool = config
                    .create_pool(Some(deadpool_redis::Runtime::Tokio1))
                    .map_err(|err| BrokerError::Config(err.to_string()))?;
                Ok(Pool::Single(pool))
            }
            RedisAddress::Cluster(seeds) => {
                let client =
                    cluster_client(seeds, CLUSTER_ATTEMPT_TIMEOUT, CLUSTER_REQUEST_TIMEOUT)
                        .build()?;
                // Making a cluster connection asks every seed and node,
                // and a hung one costs a connect timeout: more room than
                // one server needs.
                let timeouts = deadpool_redis::Timeouts {
                    create: Some(CLUSTER_REQUEST_TIMEOUT),
                    ..timeouts
                };
                let pool = managed::Pool::builder(ClusterManager { client })
                    .max_size(size)
                    .timeouts(timeouts)
                    .runtime(deadpool_redis::Runtime::Tokio1)
                    .build()
                    .map_err(|err| BrokerError::Config(err.to_string()))?;
                Ok(Pool::Cluster(pool))
            }
        }
    }

    pub(crate) async fn get(&self) -> Result<Connection, BrokerError> {
        match self {
            Pool::Single(pool) => Ok(Connection::Single(pool.get().await?)),
            Pool::Cluster(pool) => match pool.get().await {
                Ok(conn) => Ok(Connection::Cluster(Pooled {
                    conn: Some(conn),
                    stale: false,
                })),
                Err(err) => Err(BrokerError::ClusterPool(err.to_string())),
            },
        }
    }
}

/// A connection to one server or to a cluster, used as any redis-rs async
/// connection: each call goes to the kind it holds.
#[allow(missing_debug_implementations)] // redis-rs's cluster connection is not `Debug`
pub enum ServerOrCluster<S, C> {
    Single(S),
    Cluster(C),
}

impl<S: ConnectionLike + Send, C: ConnectionLike + Send> ConnectionLike for ServerOrCluster<S, C> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            ServerOrCluster::Single(conn) => conn.req_packed_command(cmd),
            ServerOrCluster::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            ServerOrCluster::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            ServerOrCluster::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            ServerOrCluster::Single(conn) => conn.get_db(),
            ServerOrCluster::Cluster(conn) => conn.get_db(),
        }
    }
}

/// A pooled connection to a server or a cluster.
pub type Connection = ServerOrCluster<deadpool_redis::Connection, Pooled>;

/// A pooled cluster connection that leaves the pool, instead of going back
/// to it, after an error that says its view of the cluster may be stale.
/// redis-rs refreshes its slot map on a redirection or a dropped
/// connection, but not on a timeout: a connection whose master hangs
/// (stopped, or cut off) would keep sending that master's slots to it
/// after its replica took over. A new connection asks the cluster afresh.
#[allow(missing_debug_implementations)] // redis-rs's cluster connection is not `Debug`
pub struct Pooled {
    conn: Option<managed::Object<ClusterManager>>,
    stale: bool,
}

impl Pooled {
    fn send<'a, T: Send + 'a>(
        &'a mut self,
        request: impl FnOnce(&'a mut ClusterConnection) -> RedisFuture<'a, T> + Send + 'a,
    ) -> RedisFuture<'a, T> {
        let Pooled { conn, stale } = self;
        Box::pin(async move {
            let conn = conn.as_deref_mut().ok_or_else(|| {
                RedisError::from((redis::ErrorKind::Client, "connection released"))
            })?;
            let result = request(conn).await;
            if let Err(err) = &result {
                *stale |= leaves_view_stale(err);
            }
            result
        })
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let (true, Some(conn)) = (self.stale, self.conn.take()) {
            // Taken out of the pool and dropped: its connections close.
            drop(managed::Object::take(conn));
        }
    }
}

/// Errors after which a cluster connection's map of slots to nodes may be
/// out of date: timeouts, broken connections, and the cluster's own
/// redirections and refusals (a transaction aborted by one included).
fn leaves_view_stale(err: &RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    err.is_timeout()
        || err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_cluster_error()
        || matches!(
            err.kind(),
            ErrorKind::Server(
                ServerErrorKind::ExecAbort
                    | ServerErrorKind::ReadOnly
                    | ServerErrorKind::MasterDown
            )
        )
}

impl ConnectionLike for Pooled {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.send(move |conn| conn.req_packed_command(cmd))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.send(move |conn| conn.req_packed_commands(pipeline, offset, count))
    }

    fn get_db(&self) -> i64 {
        self.conn.as_deref().map_or(0, ConnectionLike::get_db)
    }
}

/// A connection of its own, for blocking pops: a blocking command would
/// stall every other user of a shared connection.
pub type BlockingConnection = ServerOrCluster<MultiplexedConnection, ClusterConnection>;

impl BlockingConnection {
    /// Connects with a response timeout that outlasts `block` (redis-rs
    /// defaults to 500 ms).
    pub(crate) async fn open(address: &RedisAddress, block: Duration) -> Result<Self, BrokerError> {
        let response = block + Duration::from_secs(2);
        match address {
            RedisAddress::Single(url) => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(response));
                let conn = redis::Client::open(url.as_str())?
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                Ok(ServerOrCluster::Single(conn))
            }
            RedisAddress::Cluster(seeds) => {
                // The whole request may outlast one blocked attempt by the
                // time a redirection or failover takes.
                let client =
                    cluster_client(seeds, response, response + CLUSTER_REQUEST_TIMEOUT).build()?;
                Ok(ServerOrCluster::Cluster(
                    client.get_async_connection().await?,
                ))
            }
        }
    }
}

/// The payloads of messages on one pub/sub channel, on a connection of
/// its own; ends when the connection is lost (subscribe again).
#[allow(missing_debug_implementations)] // a stream of messages
pub struct Messages {
    stream: Pin<Box<dyn Stream<Item = String> + Send>>,
}

impl Messages {
    pub(crate) async fn subscribe(
        address: &RedisAddress,
        channel: String,
    ) -> Result<Self, BrokerError> {
        match address {
            RedisAddress::Single(url) => {
                let mut pubsub = redis::Client::open(url.as_str())?
                    .get_async_pubsub()
                    .await?;
                pubsub.subscribe(&channel).await?;
                let stream = pubsub
                    .into_on_message()
                    .filter_map(|message| async move { message.get_payload::<String>().ok() });
                Ok(Messages {
                    stream: Box::pin(stream),
                })
            }
            RedisAddress::Cluster(seeds) => {
                // Pub/sub on a cluster connection needs RESP3.
                let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
                let client =
                    cluster_client(seeds, CLUSTER_ATTEMPT_TIMEOUT, CLUSTER_REQUEST_TIMEOUT)
                        .use_protocol(redis::ProtocolVersion::RESP3)
                        .push_sender(sender)
                        .build()?;
                let mut conn = client.get_async_connection().await?;
                conn.subscribe(&channel).await?;
                // The subscription is re-made by redis-rs only when it
                // reconnects or refreshes its slot map, which a connection
                // that sends nothing never does: a ping now and then finds
                // a subscription whose node died or hangs, and ends the
                // stream, so that the caller subscribes afresh.
                let mut liveness = tokio::time::interval(SUBSCRIPTION_CHECK);
                liveness.reset();
                let stream = futures::stream::unfold(
                    (receiver, conn, liveness),
                    |(mut receiver, mut conn, mut liveness)| async move {
                        loop {
                            tokio::select! {
                                push = receiver.recv() => {
                                    return Some((push?, (receiver, conn, liveness)));
                                }
                                _ = liveness.tick() => {
                                    let alive: Result<Value, RedisError> =
                                        redis::cmd("PING").query_async(&mut conn).await;
                                    if alive.is_err() {
                                        return None;
                                    }
                                }
                            }
                        }
                    },
                )
                .filter_map(|push| async move { message_payload(push) });
                Ok(Messages {
                    stream: Box::pin(stream),
                })
            }
        }
    }

    /// The next message's payload; `None` once the subscription is lost.
    pub async fn next(&mut self) -> Option<String> {
        self.stream.next().await
    }
}

/// The payload of a pub/sub message pushed by the server (`[channel,
/// payload]`); nothing for other pushes (subscription confirmations).
fn message_payload(push: redis::PushInfo) -> Option<String> {
    if push.kind != redis::PushKind::Message {
        return None;
    }
    let payload = push.data.into_iter().nth(1)?;
    redis::from_redis_value(payload).ok()
}

/// Single-key commands sent together, answered in order: one pipeline on
/// a single server; on a cluster one pipeline per hash slot, all sent at
/// once, since a cluster refuses a pipeline whose keys span slots.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    commands: Vec<Cmd>,
}

impl Batch {
    pub(crate) fn new() -> Self {
        Batch::default()
    }

    /// Adds a command whose first argument is the one key it touches.
    pub(crate) fn add(&mut self, cmd: Cmd) -> &mut Self {
        self.commands.push(cmd);
        self
    }

    /// Sends the batch on `conn`; each reply converted to `T`.
    pub(crate) async fn query<T: FromRedisValue>(
        self,
        conn: &mut Connection,
    ) -> Result<Vec<T>, BrokerError> {
        if self.commands.is_empty() {
            return Ok(Vec::new());
        }
        let replies = match conn {
            Connection::Single(conn) => {
                let mut pipe = redis::pipe();
                for cmd in self.commands {
                    pipe.add_command(cmd);
                }
                pipe.query_async::<Vec<Value>>(conn).await?
            }
            Connection::Cluster(pooled) => {
                let commands = self.commands;
                pooled
                    .send(move |conn| Box::pin(by_slot(conn, commands)))
                    .await?
            }
        };
        replies
            .into_iter()
            .map(|reply| {
                let value =
                    redis::from_redis_value(reply.extract_error()?).map_err(RedisError::from)?;
                Ok(value)
            })
            .collect()
    }
}

/// The slot of a command's key (its first argument).
fn slot_of(cmd: &Cmd) -> Option<Slot> {
    match cmd.args_iter().nth(1) {
        Some(redis::Arg::Simple(key)) => Some(Slot::for_key(key)),
        _ => None,
    }
}

/// Sends `commands` as one pipeline per slot, concurrently, and puts the
/// replies back in the commands' order.
async fn by_slot(conn: &ClusterConnection, commands: Vec<Cmd>) -> Result<Vec<Value>, RedisError> {
    let count = commands.len();
    let mut groups: HashMap<Option<Slot>, (Vec<usize>, redis::Pipeline)> = HashMap::new();
    for (at, cmd) in commands.into_iter().enumerate() {
        let (places, pipe) = groups
            .entry(slot_of(&cmd))
            .or_insert_with(|| (Vec::new(), redis::pipe()));
        places.push(at);
        pipe.add_command(cmd);
    }
    let sent = groups.into_values().map(|(places, pipe)| {
        let mut conn = conn.clone();
        async move {
            let replies: Vec<Value> = pipe.query_async(&mut conn).await?;
            Ok::<_, RedisError>((places, replies))
        }
    });
    let mut ordered = vec![Value::Nil; count];
    for (places, replies) in futures::future::try_join_all(sent).await? {
        for (at, reply) in places.into_iter().zip(replies) {
            ordered[at] = reply;
        }
    }
    Ok(ordered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_address_takes_several_seeds() {
        let address = RedisAddress::new("redis://a:1, redis://b:2,", true).expect("address");
        assert_eq!(
            address,
            RedisAddress::Cluster(vec!["redis://a:1".to_owned(), "redis://b:2".to_owned()])
        );
        assert!(RedisAddress::new(" , ", true).is_err());
    }

    #[test]
    fn one_server_s_url_is_taken_whole() {
        // A comma is allowed in a password.
        let address = RedisAddress::new("redis://:a,b@host:1", false).expect("single");
        assert_eq!(
            address,
            RedisAddress::Single("redis://:a,b@host:1".to_owned())
        );
    }

    #[test]
    fn errors_that_may_mean_a_stale_view_of_the_cluster_are_told_apart() {
        let timeout = RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert!(leaves_view_stale(&timeout));
        let wrong_type = RedisError::from((redis::ErrorKind::UnexpectedReturnType, "not a list"));
        assert!(!leaves_view_stale(&wrong_type));
    }

    #[test]
    fn commands_of_one_queue_share_a_slot() {
        let keys = super::super::Keys::new("p");
        let ready = slot_of(&Cmd::lpush(keys.ready("q", 3), "id"));
        let delayed = slot_of(&Cmd::zadd(keys.delayed("q"), "id:3", 1));
        let other = slot_of(&Cmd::lpush(keys.ready("elsewhere", 3), "id"));
        assert_eq!(ready, delayed);
        assert!(ready.is_some());
        assert_ne!(ready, other, "two queues' tags picked to differ");
        assert_eq!(slot_of(&redis::cmd("TIME")), None);
    }
}
