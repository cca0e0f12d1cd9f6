//! No generated secret value may appear in Debug, Display, plan, event or log output
//! of a full run. The scan is checked to be able to fail: the files the user asked for
//! (state, secret manifests) do contain the values.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unused_must_use
)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{spec, Harness};
use gitpod_refarch::resource::{Output, RegistryOutput, StorageOutput};
use gitpod_refarch::sim::{Faults, LatencyProfile};
use gitpod_refarch::spec::Cloud;
use gitpod_refarch::state::State;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn secret_values(st: &State) -> Vec<String> {
    let mut v: Vec<String> = st.secrets.values().map(|s| s.expose().clone()).collect();
    for o in st.outputs.values() {
        match o {
            Output::DnsIdentity {
                credentials: Some(c),
                ..
            } => v.push(c.expose().clone()),
            Output::ObjectStorage(StorageOutput::S3 {
                secret_access_key, ..
            }) => v.push(secret_access_key.expose().clone()),
            Output::Registry(RegistryOutput::External { password, .. }) => {
                v.push(password.expose().clone())
            }
            Output::Registry(RegistryOutput::InClusterS3 {
                secret_access_key, ..
            }) => v.push(secret_access_key.expose().clone()),
            Output::Database { password, .. } => v.push(password.expose().clone()),
            _ => {}
        }
    }
    v
}

#[tokio::test(start_paused = true)]
async fn no_secret_reaches_debug_display_plan_events_or_logs() {
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    for cloud in [Cloud::Gcp, Cloud::Aws] {
        let s = spec(cloud);
        let h = Harness::new(LatencyProfile::realistic());
        h.sim.set_faults(Faults::random(0.1, 11));
        let engine = h.engine();
        let mut printed = Vec::new();
        let plan = engine.plan(&s).await.unwrap();
        printed.push(format!("{plan}"));
        printed.push(format!("{plan:?}"));
        printed.push(plan.to_json().unwrap());
        let report = engine.apply(&plan).await.unwrap();
        printed.push(format!("{report:?}"));
        printed.push(format!("{:?}", report.outputs));
        let bundle = engine.installer_bundle(&s).await.unwrap();
        printed.push(format!("{bundle:?}"));
        printed.push(bundle.config_yaml().unwrap());
        printed.push(
            serde_json::to_string(&report.outputs.all().values().collect::<Vec<_>>()).unwrap(),
        );
        let replan = engine.plan(&s).await.unwrap();
        printed.push(format!("{replan}"));
        printed.push(replan.to_json().unwrap());
        let destroy = engine.plan_destroy(&s).await.unwrap();
        printed.push(format!("{destroy}"));
        for e in h.events() {
            printed.push(format!("{e:?}"));
            printed.push(serde_json::to_string(&e).unwrap());
        }
        let st = h.store.snapshot().unwrap();
        printed.push(format!("{st:?}"));
        printed.push(format!("{engine:?}"));

        let secrets = secret_values(&st);
        assert!(
            secrets.len() >= 6,
            "{cloud}: too few secrets found: {}",
            secrets.len()
        );
        for s in &secrets {
            assert!(s.len() >= 16, "a weak secret: {} chars", s.len());
        }
        // The scan can fail: what the user asked to write does contain the values.
        let files = st.to_json_exposed().unwrap()
            + &bundle
                .secrets
                .iter()
                .map(|m| m.to_yaml_exposed().unwrap())
                .collect::<String>();
        let decoded_files: String = bundle
            .secrets
            .iter()
            .flat_map(|m| m.data.values().map(|v| v.expose().clone()))
            .collect();
        for s in &secrets {
            let escaped = serde_json::to_string(s).unwrap();
            let escaped = &escaped[1..escaped.len() - 1];
            assert!(
                files.contains(escaped) || decoded_files.contains(s.as_str()),
                "{cloud}: secret missing from the files"
            );
        }
        let all = printed.join("\n");
        for s in &secrets {
            assert!(
                !all.contains(s.as_str()),
                "{cloud}: a secret value leaked into printed output"
            );
        }
        assert!(all.contains("<redacted>"));
    }
    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("gitpod-refarch"), "no log captured");
    assert!(
        !logs.contains("\"material\""),
        "an encryption key reached the logs"
    );
}
