//! An IAM-enforcing gRPC proxy in front of the emulator, which has no IAM: it lets through only
//! the Pub/Sub methods the roles it is given allow, as the service documents them (one
//! permission per call; cloud.google.com/pubsub/docs/access-control), and answers every other
//! call PERMISSION_DENIED as the service would. Roles apply to the whole project (the service
//! can grant them per topic or subscription; the tests do not need that).
#![allow(dead_code)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// A predefined Pub/Sub role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// `roles/pubsub.publisher`: `topics.publish`.
    Publisher,
    /// `roles/pubsub.subscriber`: `subscriptions.consume`, `topics.attachSubscription`.
    Subscriber,
    /// `roles/pubsub.viewer`: get and list of topics, subscriptions, snapshots.
    Viewer,
    /// `roles/pubsub.editor`: everything above, and create, update, delete.
    Editor,
}

impl Role {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Publisher => "roles/pubsub.publisher",
            Role::Subscriber => "roles/pubsub.subscriber",
            Role::Viewer => "roles/pubsub.viewer",
            Role::Editor => "roles/pubsub.editor",
        }
    }
}

/// The permission a method needs (`None`: one the tests never call, refused).
fn permission(method: &str) -> Option<&'static str> {
    let (service, name) = method.trim_start_matches('/').split_once('/')?;
    Some(match (service, name) {
        ("google.pubsub.v1.Publisher", "Publish") => "topics.publish",
        ("google.pubsub.v1.Publisher", "CreateTopic") => "topics.create",
        ("google.pubsub.v1.Publisher", "UpdateTopic") => "topics.update",
        ("google.pubsub.v1.Publisher", "DeleteTopic") => "topics.delete",
        ("google.pubsub.v1.Publisher", "GetTopic") => "topics.get",
        ("google.pubsub.v1.Publisher", "ListTopics") => "topics.list",
        ("google.pubsub.v1.Publisher", "ListTopicSubscriptions") => "topics.get",
        ("google.pubsub.v1.Subscriber", "CreateSubscription") => "subscriptions.create",
        ("google.pubsub.v1.Subscriber", "UpdateSubscription") => "subscriptions.update",
        ("google.pubsub.v1.Subscriber", "DeleteSubscription") => "subscriptions.delete",
        ("google.pubsub.v1.Subscriber", "GetSubscription") => "subscriptions.get",
        ("google.pubsub.v1.Subscriber", "ListSubscriptions") => "subscriptions.list",
        (
            "google.pubsub.v1.Subscriber",
            "Pull" | "StreamingPull" | "Acknowledge" | "ModifyAckDeadline" | "Seek",
        ) => "subscriptions.consume",
        _ => return None,
    })
}

/// Whether `role` grants `permission`.
fn grants(role: Role, permission: &str) -> bool {
    match role {
        Role::Editor => true,
        Role::Publisher => permission == "topics.publish",
        Role::Subscriber => {
            permission == "subscriptions.consume" || permission == "topics.attachSubscription"
        }
        Role::Viewer => permission.ends_with(".get") || permission.ends_with(".list"),
    }
}

type Body = BoxBody<Bytes, hyper::Error>;

/// A gRPC answer with only a status (a trailers-only response).
fn grpc_status(code: u8, message: &str) -> Response<Body> {
    Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .header("grpc-status", code.to_string())
        .header("grpc-message", message.replace(['\r', '\n'], " "))
        .body(
            Empty::<Bytes>::new()
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("a status response")
}

/// The proxy, running on its own threads until dropped.
pub(crate) struct IamProxy {
    /// `host:port` to give as `PUBSUB_EMULATOR_HOST`.
    pub addr: String,
    denied: Arc<Mutex<Vec<String>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl IamProxy {
    /// Listens on a free loopback port in front of `upstream` (the emulator's host:port),
    /// granting `roles`.
    pub(crate) fn start(upstream: &str, roles: &[Role]) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("proxy runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address").to_string();
        let denied = Arc::new(Mutex::new(Vec::new()));
        let roles: Arc<Vec<Role>> = Arc::new(roles.to_vec());
        let upstream = upstream.to_string();
        let d = denied.clone();
        runtime.spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let (roles, denied, upstream) = (roles.clone(), d.clone(), upstream.clone());
                tokio::spawn(async move {
                    // One upstream HTTP/2 connection per client connection.
                    let Ok(up) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let Ok((sender, conn)) = hyper::client::conn::http2::handshake(
                        TokioExecutor::new(),
                        TokioIo::new(up),
                    )
                    .await
                    else {
                        return;
                    };
                    tokio::spawn(conn);
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let mut sender = sender.clone();
                        let (roles, denied) = (roles.clone(), denied.clone());
                        async move {
                            let method = req.uri().path().to_string();
                            let allowed = permission(&method)
                                .is_some_and(|p| roles.iter().any(|r| grants(*r, p)));
                            if !allowed {
                                denied.lock().unwrap().push(method.clone());
                                let p = permission(&method).unwrap_or("(unknown method)");
                                return Ok::<_, Infallible>(grpc_status(
                                    7,
                                    &format!(
                                        "User not authorized to perform this action. (pubsub.{p})"
                                    ),
                                ));
                            }
                            Ok(match sender.send_request(req).await {
                                Ok(resp) => resp.map(|b| b.boxed()),
                                Err(e) => grpc_status(14, &format!("proxy: upstream failed: {e}")),
                            })
                        }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(client), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            denied,
            runtime: Some(runtime),
        }
    }

    /// The methods refused so far, in order.
    pub(crate) fn denied(&self) -> Vec<String> {
        self.denied.lock().unwrap().clone()
    }
}

impl Drop for IamProxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
