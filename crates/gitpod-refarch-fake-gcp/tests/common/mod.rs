//! A tiny HTTP helper for the tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;

pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    pub fn new(base: String) -> Client {
        Client {
            http: reqwest::Client::new(),
            base,
        }
    }

    pub async fn call(&self, verb: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(verb.as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (status, v)
    }

    pub async fn ok(&self, verb: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(verb, path, body).await;
        assert!(status < 300, "{verb} {path} answered {status}: {v}");
        v
    }

    pub async fn get(&self, path: &str) -> Value {
        self.ok("GET", path, None).await
    }

    /// Poll an operation path until it is done; returns the final operation.
    pub async fn wait(&self, path: &str) -> Value {
        for _ in 0..20 {
            let op = self.get(path).await;
            if op["done"] == Value::Bool(true) || op["status"] == "DONE" {
                return op;
            }
        }
        panic!("operation {path} never finished");
    }
}
