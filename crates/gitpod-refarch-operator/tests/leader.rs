//! Leader election on a Lease against the Kubernetes fake (in process, real HTTPS on
//! 127.0.0.1): one leader among candidates, takeover after a killed leader's Lease
//! expires, a leader cut off from the API server stops its work, a clean release
//! hands over at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gitpod_refarch_fake_kube::{FakeConfig, FakeKube};
use gitpod_refarch_operator::leader::{run_as_leader, run_as_leader_until, LeaderConfig};
use k8s_openapi::api::coordination::v1::Lease;
use tokio::sync::mpsc;

const NS: &str = "kube-system";
const LEASE: &str = "gitpod-refarch-operator";

fn client_for(url: &str, fake: &FakeKube) -> kube::Client {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::CertificateDer;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = kube::Config::new(url.parse().unwrap());
    config.root_cert = Some(
        CertificateDer::pem_slice_iter(fake.ca_pem().as_bytes())
            .map(|c| c.unwrap().to_vec())
            .collect(),
    );
    kube::Client::try_from(config).unwrap()
}

fn config(identity: &str) -> LeaderConfig {
    LeaderConfig::new(NS, LEASE, identity)
        .with_lease_duration(Duration::from_secs(3))
        .with_renew_deadline(Duration::from_secs(2))
        .with_retry_period(Duration::from_millis(150))
}

/// What the candidates' work reports: `start <id>` when it starts leading,
/// `stop <id>` when its future is dropped.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, s: String) {
        self.0.lock().unwrap().push(s);
    }
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

struct OnDrop(Log, String, mpsc::UnboundedSender<String>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        let e = format!("stop {}", self.1);
        self.0.push(e.clone());
        let _ = self.2.send(e);
    }
}

/// A candidate whose work runs until dropped, reporting on `log` and `tx`.
fn candidate(
    client: kube::Client,
    identity: &str,
    log: Log,
    tx: mpsc::UnboundedSender<String>,
) -> tokio::task::JoinHandle<gitpod_refarch::Result<()>> {
    let id = identity.to_string();
    tokio::spawn(run_as_leader(client, config(identity), move || {
        let (log, tx, id) = (log.clone(), tx.clone(), id.clone());
        async move {
            log.push(format!("start {id}"));
            let _ = tx.send(format!("start {id}"));
            let _guard = OnDrop(log, id, tx);
            std::future::pending::<()>().await;
            Ok(())
        }
    }))
}

async fn next(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .expect("no leadership change within 60 s")
        .unwrap()
}

async fn lease(client: &kube::Client) -> Lease {
    kube::Api::<Lease>::namespaced(client.clone(), NS)
        .get(LEASE)
        .await
        .unwrap()
}

fn holder(l: &Lease) -> Option<String> {
    l.spec.as_ref().unwrap().holder_identity.clone()
}

fn transitions(l: &Lease) -> i32 {
    l.spec.as_ref().unwrap().lease_transitions.unwrap_or(0)
}

/// Wait until the fake has answered `n` more reads of the Lease (the candidates'
/// tries), so a follower had many chances to (wrongly) take over.
async fn lease_reads(fake: &FakeKube, n: u64) {
    let start = fake.counts().of("get", "leases");
    while fake.counts().of("get", "leases") < start + n {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_candidates_exactly_one_leader() {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let client = client_for(&fake.url(), &fake);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let log = Log::default();
    let a = candidate(client.clone(), "replica-a", log.clone(), tx.clone());
    let b = candidate(client.clone(), "replica-b", log.clone(), tx.clone());

    let first = next(&mut rx).await;
    let leader = first.strip_prefix("start ").unwrap().to_string();
    // Both candidates keep trying for a while (more than a lease duration of tries).
    lease_reads(&fake, 40).await;
    assert_eq!(
        log.all(),
        vec![first.clone()],
        "exactly one leader, never two"
    );
    let l = lease(&client).await;
    assert_eq!(holder(&l).as_deref(), Some(leader.as_str()));
    assert_eq!(transitions(&l), 0, "the leadership never changed hands");
    assert_eq!(l.spec.as_ref().unwrap().lease_duration_seconds, Some(3));
    assert!(rx.try_recv().is_err());
    a.abort();
    b.abort();
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_after_its_lease_expires() {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let client = client_for(&fake.url(), &fake);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let log = Log::default();
    let a = candidate(client.clone(), "replica-a", log.clone(), tx.clone());
    assert_eq!(next(&mut rx).await, "start replica-a");
    let b = candidate(client.clone(), "replica-b", log.clone(), tx.clone());
    lease_reads(&fake, 10).await;

    // Killed: no release, the Lease still names replica-a.
    a.abort();
    assert_eq!(next(&mut rx).await, "stop replica-a");
    let last = lease(&client).await;
    assert_eq!(holder(&last).as_deref(), Some("replica-a"));
    let last_renew = last.spec.as_ref().unwrap().renew_time.clone().unwrap().0;

    assert_eq!(next(&mut rx).await, "start replica-b");
    let now = lease(&client).await;
    assert_eq!(holder(&now).as_deref(), Some("replica-b"));
    assert_eq!(transitions(&now), 1);
    // replica-b waited a whole lease duration after replica-a's last renewal.
    let acquired = now.spec.as_ref().unwrap().acquire_time.clone().unwrap().0;
    assert!(
        acquired - last_renew >= k8s_openapi::chrono::Duration::seconds(3),
        "took over at {acquired}, replica-a renewed at {last_renew}"
    );
    assert_eq!(
        log.all(),
        vec!["start replica-a", "stop replica-a", "start replica-b"]
    );
    b.abort();
    fake.shutdown().await;
}

/// A TCP proxy to the fake that can be cut (the replica's network fails).
struct Proxy {
    url: String,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(to: std::net::SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let t = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                t.lock().unwrap().push(conn);
            }
        });
        tasks.lock().unwrap().push(accept);
        Proxy { url, tasks }
    }

    /// Stop accepting and drop every open connection.
    fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_renew_stops_its_work() {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let client = client_for(&fake.url(), &fake);
    let proxy = Proxy::start(fake.addr()).await;
    let cut_off = client_for(&proxy.url, &fake);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let log = Log::default();
    let a = candidate(cut_off, "replica-a", log.clone(), tx.clone());
    assert_eq!(next(&mut rx).await, "start replica-a");
    let b = candidate(client.clone(), "replica-b", log.clone(), tx.clone());
    lease_reads(&fake, 10).await;

    proxy.cut();
    // replica-a gives up within its renew deadline, before its Lease expires for
    // replica-b: its work stops first.
    assert_eq!(next(&mut rx).await, "stop replica-a");
    assert_eq!(next(&mut rx).await, "start replica-b");
    assert_eq!(
        log.all(),
        vec!["start replica-a", "stop replica-a", "start replica-b"]
    );
    assert!(!a.is_finished(), "replica-a is a candidate again");
    let l = lease(&client).await;
    assert_eq!(holder(&l).as_deref(), Some("replica-b"));
    assert_eq!(transitions(&l), 1);
    a.abort();
    b.abort();
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_release_hands_over_at_once() {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let client = client_for(&fake.url(), &fake);
    // A long lease: a handover that waited for it to expire would take a minute.
    let long = |id: &str| {
        LeaderConfig::new(NS, LEASE, id)
            .with_lease_duration(Duration::from_secs(60))
            .with_renew_deadline(Duration::from_secs(40))
            .with_retry_period(Duration::from_millis(100))
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (led_tx, led_rx) = tokio::sync::oneshot::channel::<()>();
    let mut led_tx = Some(led_tx);
    let a = tokio::spawn(run_as_leader_until(
        client.clone(),
        long("replica-a"),
        async {
            let _ = stop_rx.await;
        },
        move || {
            if let Some(t) = led_tx.take() {
                let _ = t.send(());
            }
            std::future::pending::<gitpod_refarch::Result<()>>()
        },
    ));
    led_rx.await.unwrap();
    let (b_tx, mut b_rx) = mpsc::unbounded_channel();
    let b = tokio::spawn(run_as_leader(
        client.clone(),
        long("replica-b"),
        move || {
            let _ = b_tx.send(());
            std::future::pending::<gitpod_refarch::Result<()>>()
        },
    ));
    lease_reads(&fake, 10).await;
    assert!(b_rx.try_recv().is_err(), "replica-b leads beside replica-a");

    // Graceful stop: replica-a releases the Lease.
    stop_tx.send(()).unwrap();
    a.await.unwrap().unwrap();
    tokio::time::timeout(Duration::from_secs(30), b_rx.recv())
        .await
        .expect("replica-b waited for the lease to expire instead of taking the released one")
        .unwrap();
    let l = lease(&client).await;
    assert_eq!(holder(&l).as_deref(), Some("replica-b"));
    assert_eq!(transitions(&l), 1);
    b.abort();
    fake.shutdown().await;
}

#[tokio::test]
async fn durations_that_could_overlap_are_refused() {
    let fake = FakeKube::start(FakeConfig::default()).await.unwrap();
    let client = client_for(&fake.url(), &fake);
    let bad = LeaderConfig::new(NS, LEASE, "x")
        .with_lease_duration(Duration::from_secs(2))
        .with_renew_deadline(Duration::from_secs(2));
    let err = run_as_leader(client, bad, || async { Ok(()) })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), gitpod_refarch::ErrorKind::InvalidInput);
    assert!(err.message().contains("renew deadline"), "{err}");
    fake.shutdown().await;
}
