//! A tiny ARM client for the tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gitpod_refarch_fake_azure::{FakeAzure, FakeConfig, DEFAULT_CLIENT_ID, DEFAULT_SUBSCRIPTION};
use serde_json::{json, Value};

pub const SUB: &str = DEFAULT_SUBSCRIPTION;
pub const RES: &str = "2025-04-01";
pub const NET: &str = "2025-05-01";
pub const AKS: &str = "2026-08-01";
pub const DNS: &str = "2018-05-01";
pub const PDNS: &str = "2024-06-01";
pub const MSI: &str = "2024-11-30";
pub const AUTHZ: &str = "2022-04-01";
pub const ACR: &str = "2025-11-01";
pub const MYSQL: &str = "2024-12-30";

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub token: Option<String>,
}

/// Start a fake and a client holding a valid ARM token.
pub async fn start(config: FakeConfig) -> (FakeAzure, Client) {
    let fake = FakeAzure::start(config).await.unwrap();
    let token = fake.token_for(DEFAULT_CLIENT_ID);
    let c = Client {
        http: reqwest::Client::new(),
        base: fake.url(),
        token,
    };
    (fake, c)
}

/// A fake with every namespace registered and operations done on the first poll.
pub async fn ready() -> (FakeAzure, Client) {
    start(
        FakeConfig::default()
            .with_providers_registered(true)
            .with_polls_to_finish(1),
    )
    .await
}

pub fn rg_path(rg: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{rg}")
}

pub fn q(path: &str, api: &str) -> String {
    format!("{path}?api-version={api}")
}

impl Client {
    pub async fn call(&self, verb: &str, path: &str, body: Option<Value>) -> Resp {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{}", self.base, path)
        };
        let method = reqwest::Method::from_bytes(verb.as_bytes()).unwrap();
        let mut req = self.http.request(method, url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn ok(&self, verb: &str, path: &str, body: Option<Value>) -> Resp {
        let r = self.call(verb, path, body).await;
        assert!(
            r.status < 300,
            "{verb} {path} answered {}: {}",
            r.status,
            r.body
        );
        r
    }

    pub async fn get(&self, path: &str) -> Value {
        self.ok("GET", path, None).await.body
    }

    /// Poll an Azure-AsyncOperation URL until it is terminal; returns the status body.
    pub async fn wait_async(&self, url: &str) -> Value {
        for _ in 0..20 {
            let r = self.ok("GET", url, None).await;
            if r.body["status"] != "InProgress" {
                return r.body;
            }
        }
        panic!("operation {url} never finished");
    }

    /// Poll a Location URL until it stops answering 202.
    pub async fn wait_location(&self, url: &str) -> Resp {
        for _ in 0..20 {
            let r = self.call("GET", url, None).await;
            if r.status != 202 {
                return r;
            }
        }
        panic!("operation {url} never finished");
    }

    /// PUT and wait for whichever LRO header the answer carries.
    pub async fn put_done(&self, path: &str, body: Value) -> Resp {
        let r = self.ok("PUT", path, Some(body)).await;
        if let Some(url) = r.header("azure-asyncoperation") {
            let s = self.wait_async(&url).await;
            assert_eq!(s["status"], "Succeeded", "{s}");
        } else if let Some(url) = r.header("location") {
            let f = self.wait_location(&url).await;
            assert!(f.status < 300, "{}: {}", f.status, f.body);
        }
        r
    }

    pub async fn rg(&self, name: &str) {
        self.ok(
            "PUT",
            &q(&rg_path(name), RES),
            Some(json!({"location": "westeurope"})),
        )
        .await;
    }
}
