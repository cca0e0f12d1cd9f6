//! A client of this fake's own admin endpoint, for the cloud fakes (GKE, AKS) that
//! publish their node pools' nodes: [`NodePoolPublisher`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

/// What a cloud fake wants published: the kube fake's endpoint (a URL, or a bare
/// address that gets `https://`), the CA it serves with, and one admin body
/// (`PUT /fake-kube/nodepools/{id}`) per node pool id.
#[derive(Debug, Clone, Default)]
pub struct DesiredNodePools {
    /// The kube fake's URL or bare `host:port`.
    pub endpoint: String,
    /// The CA PEM the kube fake serves with (system roots when `None`).
    pub ca_pem: Option<String>,
    /// Pool id -> the body of `PUT /fake-kube/nodepools/{id}`.
    pub pools: BTreeMap<String, Value>,
}

/// Publishes node pools to a kube fake, sending only what changed since the last
/// publish: a `PUT` for each new or changed pool, a `DELETE` for each pool gone. A
/// failed publish is logged to stderr once (per pool and message) and retried on the
/// next [`sync`](Self::sync); it never fails the caller.
pub struct NodePoolPublisher {
    who: &'static str,
    inner: tokio::sync::Mutex<Inner>,
}

impl std::fmt::Debug for NodePoolPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodePoolPublisher")
            .field("who", &self.who)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Inner {
    /// Pool id -> the body last sent.
    published: BTreeMap<String, Value>,
    /// The client, for the (endpoint, CA) it was built for.
    client: Option<((String, Option<String>), reqwest::Client)>,
    /// The last error logged per pool ("" for the client).
    errors: BTreeMap<String, String>,
}

impl Inner {
    fn log(&mut self, who: &str, pool: &str, message: String) {
        if self.errors.get(pool) != Some(&message) {
            eprintln!("{who}: {message} (the call itself is answered as usual)");
            self.errors.insert(pool.to_string(), message);
        }
    }
}

impl NodePoolPublisher {
    /// A publisher whose log lines start with `who` (the cloud fake's name).
    pub fn new(who: &'static str) -> Self {
        NodePoolPublisher {
            who,
            inner: tokio::sync::Mutex::new(Inner::default()),
        }
    }

    /// Publishes the difference between `read()` and what was last published.
    /// `read` runs under the publisher's lock, so concurrent syncs publish in the
    /// order they read; `None` (no kube fake configured) publishes nothing.
    pub async fn sync(&self, read: impl FnOnce() -> Option<DesiredNodePools>) {
        let mut inner = self.inner.lock().await;
        let Some(desired) = read() else {
            return;
        };
        let changed: Vec<(String, Value)> = desired
            .pools
            .iter()
            .filter(|(k, v)| inner.published.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let gone: Vec<String> = inner
            .published
            .keys()
            .filter(|k| !desired.pools.contains_key(*k))
            .cloned()
            .collect();
        if changed.is_empty() && gone.is_empty() {
            return;
        }
        let key = (desired.endpoint.clone(), desired.ca_pem.clone());
        let client = match &inner.client {
            Some((k, c)) if *k == key => c.clone(),
            _ => match build_client(desired.ca_pem.as_deref()) {
                Ok(c) => {
                    inner.client = Some((key, c.clone()));
                    c
                }
                Err(e) => {
                    let message = format!("cannot publish nodes to the kube fake: {e}");
                    inner.log(self.who, "", message);
                    return;
                }
            },
        };
        let base = base_url(&desired.endpoint);
        for (id, body) in changed {
            let url = format!("{base}/fake-kube/nodepools/{id}");
            match send(client.put(&url).json(&body)).await {
                Ok(()) => {
                    inner.errors.remove(&id);
                    inner.published.insert(id, body);
                }
                Err(e) => {
                    let message = format!("publishing the nodes of {id} failed: {e}");
                    inner.log(self.who, &id, message);
                }
            }
        }
        for id in gone {
            let url = format!("{base}/fake-kube/nodepools/{id}");
            match send(client.delete(&url)).await {
                Ok(()) => {
                    inner.errors.remove(&id);
                    inner.published.remove(&id);
                }
                Err(e) => {
                    let message = format!("removing the nodes of {id} failed: {e}");
                    inner.log(self.who, &id, message);
                }
            }
        }
    }
}

/// An error with its sources (reqwest's own message omits the cause).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The admin base URL of a configured kube endpoint (a URL or a bare address).
fn base_url(endpoint: &str) -> String {
    let e = endpoint.trim_end_matches('/');
    if e.contains("://") {
        e.to_string()
    } else {
        format!("https://{e}")
    }
}

fn build_client(ca_pem: Option<&str>) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder().timeout(Duration::from_secs(10));
    if let Some(pem) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| format!("the kube CA is not PEM: {e}"))?;
        b = b.tls_certs_only(certs);
    }
    b.build().map_err(|e| e.to_string())
}

async fn send(req: reqwest::RequestBuilder) -> Result<(), String> {
    let resp = req.send().await.map_err(|e| chain(&e))?;
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else {
        let text = resp.text().await.unwrap_or_default();
        Err(format!("{status}: {text}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_address_gets_https_and_a_url_is_kept() {
        assert_eq!(base_url("127.0.0.1:1/"), "https://127.0.0.1:1");
        assert_eq!(base_url("https://127.0.0.1:1/"), "https://127.0.0.1:1");
        assert_eq!(base_url("http://127.0.0.1:1"), "http://127.0.0.1:1");
    }
}
