use redis::{Commands, ConnectionLike};

use crate::{DEFAULT_REDIS_URL, random_suffix};

/// A Redis key prefix of its own for one test. Its keys are deleted (SCAN +
/// UNLINK, never FLUSHDB: other tests share the server) when it is dropped.
///
/// `REDIS_URL` says where Redis is and `CONVEYOR_REDIS_CLUSTER=true` that
/// it is a cluster (then `REDIS_URL` names one or more of its nodes,
/// separated by commas), as for Conveyor's own processes.
#[derive(Debug)]
pub struct TestRedis {
    /// Redis URL to connect to (with `cluster`, seed node URLs separated
    /// by commas).
    pub url: String,
    /// Whether `url` names a Redis Cluster.
    pub cluster: bool,
    /// The prefix every key of this test starts with.
    pub prefix: String,
}

impl TestRedis {
    pub fn new() -> TestRedis {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned());
        let cluster = std::env::var("CONVEYOR_REDIS_CLUSTER").is_ok_and(|value| value == "true");
        TestRedis {
            url,
            cluster,
            prefix: format!("ctest-{}", random_suffix()),
        }
    }

    /// A plain (blocking) connection, to a server or to the cluster, for a
    /// test's own single-key commands.
    pub fn connection(&self) -> redis::RedisResult<RedisConnection> {
        if self.cluster {
            let client = redis::cluster::ClusterClient::new(self.seeds())?;
            Ok(RedisConnection::Cluster(Box::new(client.get_connection()?)))
        } else {
            let client = redis::Client::open(self.url.as_str())?;
            Ok(RedisConnection::Single(client.get_connection()?))
        }
    }

    fn seeds(&self) -> Vec<&str> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|seed| !seed.is_empty())
            .collect()
    }

    /// Every key under this test's prefix, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .each_server(|conn| {
                let keys: Vec<String> =
                    conn.scan_match(self.pattern())?.collect::<Result<_, _>>()?;
                Ok(keys)
            })
            .expect("scan test keys")
            .into_iter()
            .flatten()
            .collect();
        keys.sort();
        keys
    }

    /// Deletes every key under this test's prefix: what a Redis that lost
    /// its data looks like to this test.
    pub fn delete_all(&self) -> redis::RedisResult<usize> {
        let deleted = self.each_server(|conn| {
            let keys: Vec<String> = conn.scan_match(self.pattern())?.collect::<Result<_, _>>()?;
            let mut deleted = 0;
            // One key per command: on a cluster node, keys of two slots
            // cannot share one.
            for chunk in keys.chunks(500) {
                let mut pipe = redis::pipe();
                for key in chunk {
                    pipe.unlink(key);
                }
                let counts: Vec<usize> = pipe.query(conn)?;
                deleted += counts.iter().sum::<usize>();
            }
            Ok(deleted)
        })?;
        Ok(deleted.iter().sum())
    }

    fn pattern(&self) -> String {
        format!("{}:*", self.prefix)
    }

    /// Runs `f` on every server holding keys: the one server, or each
    /// master of the cluster (a `SCAN` sees one node's keys only).
    fn each_server<T>(
        &self,
        mut f: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> redis::RedisResult<Vec<T>> {
        let urls = if self.cluster {
            self.masters()?
        } else {
            vec![self.url.clone()]
        };
        urls.iter()
            .map(|url| {
                let mut conn = redis::Client::open(url.as_str())?.get_connection()?;
                f(&mut conn)
            })
            .collect()
    }

    /// The URLs of the cluster's masters, from `CLUSTER NODES` of a seed.
    fn masters(&self) -> redis::RedisResult<Vec<String>> {
        let mut last_error = None;
        for seed in self.seeds() {
            let nodes = redis::Client::open(seed)
                .and_then(|client| client.get_connection())
                .and_then(|mut conn| {
                    redis::cmd("CLUSTER")
                        .arg("NODES")
                        .query::<String>(&mut conn)
                });
            match nodes {
                Ok(nodes) => return Ok(master_urls(&nodes)),
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "no cluster node"))
        }))
    }
}

/// `redis://host:port` of each live master in a `CLUSTER NODES` answer
/// (`<id> <host:port@bus-port> <flags> ...`).
fn master_urls(nodes: &str) -> Vec<String> {
    nodes
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let address = fields.nth(1)?;
            let flags = fields.next()?;
            let live_master = flags.split(',').any(|flag| flag == "master")
                && !flags.split(',').any(|flag| flag == "fail");
            let host_port = address.split('@').next()?;
            live_master.then(|| format!("redis://{host_port}"))
        })
        .collect()
}

impl Default for TestRedis {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if let Err(err) = self.delete_all() {
            eprintln!(
                "testkit: could not delete keys under {}: {err}",
                self.prefix
            );
        }
    }
}

/// A blocking connection to one server or to a cluster; use it with
/// redis-rs's `Commands`.
#[allow(missing_debug_implementations)] // redis-rs's cluster connection is not `Debug`
pub enum RedisConnection {
    Single(redis::Connection),
    Cluster(Box<redis::cluster::ClusterConnection>),
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command(&mut self, cmd: &[u8]) -> redis::RedisResult<redis::Value> {
        match self {
            RedisConnection::Single(conn) => conn.req_packed_command(cmd),
            RedisConnection::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> redis::RedisResult<Vec<redis::Value>> {
        match self {
            RedisConnection::Single(conn) => conn.req_packed_commands(cmd, offset, count),
            RedisConnection::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn req_command(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<redis::Value> {
        match self {
            RedisConnection::Single(conn) => conn.req_command(cmd),
            RedisConnection::Cluster(conn) => conn.req_command(cmd),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Single(conn) => conn.get_db(),
            RedisConnection::Cluster(conn) => conn.get_db(),
        }
    }

    fn supports_pipelining(&self) -> bool {
        match self {
            RedisConnection::Single(conn) => conn.supports_pipelining(),
            RedisConnection::Cluster(conn) => conn.supports_pipelining(),
        }
    }

    fn check_connection(&mut self) -> bool {
        match self {
            RedisConnection::Single(conn) => conn.check_connection(),
            RedisConnection::Cluster(conn) => conn.check_connection(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            RedisConnection::Single(conn) => conn.is_open(),
            RedisConnection::Cluster(conn) => conn.is_open(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_masters_are_read_from_cluster_nodes() {
        let nodes = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7002@17002 master - 0 0 2 connected 5461-10922
c3 127.0.0.1:7003@17003 master,fail - 0 0 3 connected
d4 127.0.0.1:7004@17004 slave a1 0 0 1 connected
";
        assert_eq!(
            master_urls(nodes),
            vec!["redis://127.0.0.1:7001", "redis://127.0.0.1:7002"]
        );
    }
}
