//! A primary found through Redis Sentinel, and followed through failovers.
//!
//! `store.redis_url` names the primary by its Sentinel name in the host part
//! (`rediss://:password@mymaster/0`) and gives the credentials, database and TLS for it;
//! `store.nodes` lists the sentinels, spoken to with the same TLS. The probe asks the sentinels
//! which server is the primary (`SENTINEL get-master-addr-by-name`), moves every operation to
//! it when that changes, and checks with `ROLE` that it does act as a primary. An operation
//! that meets a demoted primary (`READONLY`) or a lost one marks the store down, which wakes
//! the probe: Tollgate follows a failover by itself, within the probe's first retries.

use std::sync::RwLock;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

use super::kind::KindText;
use super::node::{address, manager, short_lived};
use crate::config::{redis_client, redis_error_reason, RedisTls};
use crate::secret::Secret;

pub struct Sentinel {
    master: String,
    sentinels: Vec<(String, redis::Client)>,
    /// The primary's connection settings; the address comes from the sentinels.
    template: ConnectionInfo,
    tls: Option<RedisTls>,
    timeout: Duration,
    current: RwLock<Option<Primary>>,
}

struct Primary {
    addr: (String, u16),
    client: redis::Client,
    conn: ConnectionManager,
    durable: ConnectionManager,
}

impl Sentinel {
    pub fn new(
        url: &str,
        tls: Option<&RedisTls>,
        master: &str,
        sentinels: &[(String, u16)],
        password: Option<&Secret>,
        timeout: Duration,
    ) -> Result<Sentinel, String> {
        let template = url
            .into_connection_info()
            .map_err(|e| format!("cannot be opened by this build: {}", redis_error_reason(&e)))?;
        let mut settings = RedisConnectionInfo::default();
        if let Some(password) = password {
            settings = settings.set_password(password.expose());
        }
        let sentinels = sentinels
            .iter()
            .map(|(host, port)| {
                let info =
                    template.clone().set_addr(address(&template, host, *port)).set_redis_settings(settings.clone());
                redis_client(info, tls).map(|client| (format!("{host}:{port}"), client))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Sentinel {
            master: master.to_string(),
            sentinels,
            template,
            tls: tls.cloned(),
            timeout,
            current: RwLock::new(None),
        })
    }

    fn with_primary<T>(&self, pick: impl Fn(&Primary) -> T) -> Result<T, String> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        current.as_ref().map(pick).ok_or_else(|| format!("no sentinel has named the primary `{}` yet", self.master))
    }

    pub fn conn(&self) -> Result<ConnectionManager, String> {
        self.with_primary(|p| p.conn.clone())
    }

    pub fn durable(&self) -> Result<ConnectionManager, String> {
        self.with_primary(|p| p.durable.clone())
    }

    pub fn client(&self) -> Option<redis::Client> {
        self.with_primary(|p| p.client.clone()).ok()
    }

    /// Asks the sentinels, moves to the primary they name, and checks that it is one.
    pub async fn check(&self, timeout: Duration) -> Result<(), String> {
        let addr = self.ask(timeout).await?;
        let known = self.with_primary(|p| p.addr.clone()).ok();
        if known.as_ref() != Some(&addr) {
            let info = self.template.clone().set_addr(address(&self.template, &addr.0, addr.1));
            let client = redis_client(info, self.tls.as_ref())?;
            let primary = Primary {
                conn: manager(client.clone(), self.timeout)?,
                durable: manager(client.clone(), self.timeout)?,
                client,
                addr: addr.clone(),
            };
            *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(primary);
            tracing::info!(
                master = %self.master,
                primary = %format!("{}:{}", addr.0, addr.1),
                previous = %known.map(|(h, p)| format!("{h}:{p}")).unwrap_or_else(|| "none".into()),
                "the sentinels name a new Redis primary; the store follows it"
            );
        }
        let mut conn = self.conn()?;
        let role = tokio::time::timeout(timeout, redis::cmd("ROLE").query_async::<Vec<redis::Value>>(&mut conn)).await;
        match role {
            Ok(Ok(values)) => match values.first() {
                Some(redis::Value::BulkString(b)) if b.as_slice() == b"master" => Ok(()),
                _ => Err(format!(
                    "{}:{} does not act as the primary yet; waiting for the sentinels to settle",
                    addr.0, addr.1
                )),
            },
            Ok(Err(e)) => Err(e.kind_text()),
            Err(_) => Err(format!("timed out after {timeout:?}")),
        }
    }

    /// The primary's address by the first sentinel that answers.
    async fn ask(&self, timeout: Duration) -> Result<(String, u16), String> {
        let config = short_lived(timeout);
        let mut failures = Vec::new();
        for (name, client) in &self.sentinels {
            let answer = async {
                let mut conn = client.get_multiplexed_async_connection_with_config(&config).await?;
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(&self.master)
                    .query_async::<Option<(String, u16)>>(&mut conn)
                    .await
            };
            match tokio::time::timeout(timeout * 2, answer).await {
                Ok(Ok(Some(addr))) => return Ok(addr),
                Ok(Ok(None)) => failures.push(format!("{name}: knows no primary named `{}`", self.master)),
                Ok(Err(e)) => failures.push(format!("{name}: {}", e.kind_text())),
                Err(_) => failures.push(format!("{name}: timed out")),
            }
        }
        Err(format!("no sentinel named the primary ({})", failures.join("; ")))
    }
}
