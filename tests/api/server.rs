//! The HTTP server's limits (`src/api/server.rs`), over raw TCP as a slow or greedy client
//! would hold a connection: a slowloris head, an idle keep-alive connection, a slow body, and
//! the connection cap.

use std::net::SocketAddr;

use pubsub_jobs::api::ServerLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

struct Server {
    addr: SocketAddr,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve_with(limits: ServerLimits) -> Server {
    init_logging();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("jobs.db").display());
    let client = support::client()
        .await
        .with_store(store::connect(&url).await.unwrap());
    let config = ApiConfig {
        limits,
        ..ApiConfig::default()
    };
    let state = ApiState::new(client, config)
        .unwrap()
        .with_registry(registry())
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(pubsub_jobs::api::serve(listener, state, stop.clone()));
    Server {
        addr,
        stop,
        _dir: dir,
    }
}

/// Reads until the server closes the connection, at most `within`: what it sent, or `None`
/// if the connection was still open then.
async fn read_to_close(sock: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, sock.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

fn limits(header_s: u64, body_s: u64, max_connections: usize) -> ServerLimits {
    ServerLimits {
        header_read_timeout: Duration::from_secs(header_s),
        body_read_timeout: Duration::from_secs(body_s),
        max_connections,
    }
}

#[tokio::test]
async fn a_slowloris_head_and_an_idle_connection_are_closed_within_the_header_timeout() {
    let s = serve_with(limits(1, 30, 64)).await;
    // A head that never ends: one more header line every 200 ms.
    let mut slow = TcpStream::connect(s.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let (mut reader, mut writer) = slow.into_split();
    let drip = tokio::spawn(async move {
        for i in 0..100 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if writer
                .write_all(format!("x-drip-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(4), async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    drip.abort();
    assert!(
        closed.is_ok(),
        "a head dripping in for 4 s was not cut at the 1 s header timeout"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed before the timeout"
    );

    // A connection that sends nothing, and one kept alive after its answer.
    let mut idle = TcpStream::connect(s.addr).await.unwrap();
    assert!(
        read_to_close(&mut idle, Duration::from_secs(4))
            .await
            .is_some(),
        "an idle connection stayed open past the header timeout"
    );
    let mut kept = TcpStream::connect(s.addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut kept, Duration::from_secs(4))
        .await
        .expect("a kept-alive connection left idle is closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_body_slower_than_the_body_timeout_gets_408_naming_the_setting() {
    let s = serve_with(limits(10, 1, 64)).await;
    let mut sock = TcpStream::connect(s.addr).await.unwrap();
    sock.write_all(
        b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"job_class\"",
    )
    .await
    .unwrap();
    let answer = read_to_close(&mut sock, Duration::from_secs(5))
        .await
        .expect("the server answers and closes within the body timeout");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("request_timeout") && answer.contains("PUBSUB_JOBS_API_BODY_TIMEOUT"),
        "{answer}"
    );
}

#[tokio::test]
async fn connections_over_the_cap_wait_until_one_closes() {
    let s = serve_with(limits(30, 30, 2)).await;
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut h = TcpStream::connect(s.addr).await.unwrap();
        h.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        holders.push(h);
    }
    // The third connects (the kernel's backlog) but is not served while two are open.
    let mut third = TcpStream::connect(s.addr).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(700), third.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "a third connection was served over a cap of 2"
    );
    drop(holders.pop());
    let answer = read_to_close(&mut third, Duration::from_secs(5))
        .await
        .expect("served once a connection closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
