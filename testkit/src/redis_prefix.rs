use redis::Commands;

use crate::{DEFAULT_REDIS_URL, random_suffix};

/// A Redis key prefix of its own for one test. Its keys are deleted (SCAN +
/// UNLINK, never FLUSHDB: other tests share the server) when it is dropped.
#[derive(Debug)]
pub struct TestRedis {
    /// Redis URL to connect to.
    pub url: String,
    /// The prefix every key of this test starts with.
    pub prefix: String,
}

impl TestRedis {
    pub fn new() -> TestRedis {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned());
        TestRedis {
            url,
            prefix: format!("ctest-{}", random_suffix()),
        }
    }

    /// Every key under this test's prefix, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys = self
            .with_connection(|conn| {
                let keys: Vec<String> =
                    conn.scan_match(self.pattern())?.collect::<Result<_, _>>()?;
                Ok(keys)
            })
            .expect("scan test keys");
        keys.sort();
        keys
    }

    /// Deletes every key under this test's prefix: what a Redis that lost
    /// its data looks like to this test.
    pub fn delete_all(&self) -> redis::RedisResult<usize> {
        self.with_connection(|conn| {
            let keys: Vec<String> = conn.scan_match(self.pattern())?.collect::<Result<_, _>>()?;
            let mut deleted = 0;
            for chunk in keys.chunks(500) {
                deleted += conn.unlink::<_, usize>(chunk)?;
            }
            Ok(deleted)
        })
    }

    fn pattern(&self) -> String {
        format!("{}:*", self.prefix)
    }

    fn with_connection<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        let client = redis::Client::open(self.url.as_str())?;
        let mut conn = client.get_connection()?;
        f(&mut conn)
    }
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
