//! The SMTP provider against a real SMTP server on 127.0.0.1:0: mailin's protocol state
//! machine driven over tokio, with STARTTLS through tokio-rustls and a self-signed
//! certificate made by rcgen.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use mailin::{Action, AuthMechanism, Handler, Response, SessionBuilder};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use super::*;
use crate::domain::endpoint::{
    ChannelType, Demographic, Endpoint, EndpointStatus, Location, OptOut, User,
};
use crate::domain::template::{EmailTemplate, RenderContext, TemplateContent, render};

/// One message the server accepted.
#[derive(Debug, Clone, Default)]
struct Received {
    from: String,
    to: Vec<String>,
    data: String,
    over_tls: bool,
    login: Option<(String, String)>,
}

/// What the server answers where it does not simply accept.
#[derive(Debug, Clone, Copy, Default)]
struct Replies {
    /// Answer to RCPT TO.
    rcpt: Option<(u16, &'static str)>,
}

#[derive(Clone)]
struct Recorder {
    replies: Replies,
    over_tls: Arc<Mutex<bool>>,
    login: Option<(String, String)>,
    current: Received,
    inbox: Arc<Mutex<Vec<Received>>>,
}

impl Handler for Recorder {
    fn rcpt(&mut self, _to: &str) -> Response {
        match self.replies.rcpt {
            Some((code, text)) => Response::custom(code, text.to_string()),
            None => mailin::response::OK,
        }
    }

    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.current = Received {
            from: from.to_string(),
            to: to.to_vec(),
            over_tls: *self.over_tls.lock().unwrap(),
            login: self.login.clone(),
            ..Received::default()
        };
        mailin::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.current.data.push_str(&String::from_utf8_lossy(buf));
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        self.inbox.lock().unwrap().push(self.current.clone());
        mailin::response::OK
    }

    fn auth_plain(&mut self, _authz: &str, user: &str, password: &str) -> Response {
        if user == "herald" && password == "s3cret" {
            self.login = Some((user.to_string(), password.to_string()));
            mailin::response::AUTH_OK
        } else {
            mailin::response::INVALID_CREDENTIALS
        }
    }
}

/// A running test SMTP server.
struct TestSmtpServer {
    addr: SocketAddr,
    inbox: Arc<Mutex<Vec<Received>>>,
    /// The server certificate (PEM), when the server offers STARTTLS.
    certificate_pem: Option<String>,
}

enum SessionEnd<S> {
    Closed,
    UpgradeTls(S),
}

/// Runs SMTP lines through the session until the client quits or asks for TLS.
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    session: &mut mailin::Session<Recorder>,
) -> std::io::Result<SessionEnd<S>> {
    let mut stream = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        if stream.read_until(b'\n', &mut line).await? == 0 {
            return Ok(SessionEnd::Closed);
        }
        let response = session.process(&line);
        if response.action != Action::NoReply {
            stream.write_all(&response.buffer()?).await?;
            stream.flush().await?;
        }
        match response.action {
            Action::Close => return Ok(SessionEnd::Closed),
            Action::UpgradeTls => return Ok(SessionEnd::UpgradeTls(stream.into_inner())),
            Action::Reply | Action::NoReply => {}
        }
    }
}

impl TestSmtpServer {
    /// Starts a server; with `starttls` it offers STARTTLS and AUTH PLAIN (after TLS).
    async fn start(starttls: bool, replies: Replies) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inbox = Arc::new(Mutex::new(Vec::new()));
        let mut builder = SessionBuilder::new("test.smtp.local");
        let (acceptor, certificate_pem) = if starttls {
            let certified =
                rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
            let key = rustls::pki_types::PrivateKeyDer::Pkcs8(
                certified.signing_key.serialize_der().into(),
            );
            let config = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .unwrap();
            builder.enable_start_tls();
            builder.enable_auth(AuthMechanism::Plain);
            (
                Some(TlsAcceptor::from(Arc::new(config))),
                Some(certified.cert.pem()),
            )
        } else {
            (None, None)
        };
        let recorder = Recorder {
            replies,
            over_tls: Arc::new(Mutex::new(false)),
            login: None,
            current: Received::default(),
            inbox: Arc::clone(&inbox),
        };
        tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    return;
                };
                let mut recorder = recorder.clone();
                let over_tls = Arc::new(Mutex::new(false));
                recorder.over_tls = Arc::clone(&over_tls);
                let mut session = builder.build(peer.ip(), recorder);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let mut stream = stream;
                    stream
                        .write_all(&session.greeting().buffer().unwrap())
                        .await
                        .unwrap();
                    match converse(&mut stream, &mut session).await {
                        Ok(SessionEnd::UpgradeTls(_)) => {
                            let acceptor = acceptor.expect("tls offered only with an acceptor");
                            let Ok(tls) = acceptor.accept(stream).await else {
                                return;
                            };
                            *over_tls.lock().unwrap() = true;
                            session.tls_active();
                            let _ = converse(tls, &mut session).await;
                        }
                        Ok(SessionEnd::Closed) | Err(_) => {}
                    }
                });
            }
        });
        Self {
            addr,
            inbox,
            certificate_pem,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.inbox.lock().unwrap().clone()
    }
}

/// Ana, an email endpoint with a first name and a plan.
fn ana() -> Endpoint {
    Endpoint {
        project_id: "shop".to_string(),
        endpoint_id: "ana-mail".to_string(),
        address: "ana@example.com".to_string(),
        channel_type: ChannelType::Email,
        attributes: BTreeMap::from([("plan".to_string(), vec!["gold".to_string()])]),
        metrics: BTreeMap::new(),
        demographic: Demographic::default(),
        location: Location::default(),
        opt_out: OptOut::None,
        status: EndpointStatus::Active,
        user: User {
            user_id: "ana".to_string(),
            user_attributes: BTreeMap::from([("FirstName".to_string(), vec!["Ana".to_string()])]),
        },
        effective_date: String::new(),
        creation_date: String::new(),
        request_id: String::new(),
        cohort_id: 7,
    }
}

/// Renders the welcome template for `endpoint`, as a send would.
fn welcome(endpoint: &Endpoint, message_id: &str) -> OutboundMessage {
    let template = TemplateContent::Email(EmailTemplate {
        subject: "Welcome, {{User.UserAttributes.FirstName}}".to_string(),
        html_part: "<p>Hello <b>{{User.UserAttributes.FirstName}}</b>, your plan is {{Attributes.plan}}.</p>".to_string(),
        text_part: "Hello {{User.UserAttributes.FirstName}}, your plan is {{Attributes.plan}}.".to_string(),
    });
    let context = RenderContext::for_endpoint(endpoint, &BTreeMap::new(), &BTreeMap::new());
    OutboundMessage {
        message_id: message_id.to_string(),
        project_id: endpoint.project_id.clone(),
        endpoint_id: Some(endpoint.endpoint_id.clone()),
        channel: ChannelType::Email,
        address: endpoint.address.clone(),
        content: render(&template, &context).unwrap(),
        origination_number: String::new(),
    }
}

fn channel_for(server: &TestSmtpServer, tls: SmtpTls) -> EmailChannel {
    EmailChannel {
        enabled: true,
        host: server.addr.ip().to_string(),
        port: server.addr.port(),
        tls,
        from_address: "news@shop.example".to_string(),
        from_name: "Shop News".to_string(),
        test_only_trusted_root_pem: server.certificate_pem.clone(),
        ..EmailChannel::default()
    }
}

/// A personalised email arrives as one multipart/alternative MIME message with the right
/// sender, recipient, subject, text and HTML parts, and Herald's message id in its headers.
#[tokio::test]
async fn delivers_a_personalised_multipart_email() {
    let server = TestSmtpServer::start(false, Replies::default()).await;
    let provider = SmtpProvider::new(&channel_for(&server, SmtpTls::None)).unwrap();
    let outcome = provider.send(&welcome(&ana(), "msg-0001")).await;
    assert_eq!(outcome.status, DeliveryStatus::Successful, "{outcome:?}");
    assert!(!outcome.mark_inactive);

    let received = server.received();
    assert_eq!(received.len(), 1);
    let mail = &received[0];
    assert_eq!(mail.from, "news@shop.example");
    assert_eq!(mail.to, ["ana@example.com"]);
    assert!(!mail.over_tls);
    let data = &mail.data;
    assert!(
        data.contains("From: \"Shop News\" <news@shop.example>"),
        "{data}"
    );
    assert!(data.contains("To: ana@example.com"), "{data}");
    assert!(data.contains("Subject: Welcome, Ana"), "{data}");
    assert!(
        data.contains("Message-ID: <msg-0001@shop.example>"),
        "{data}"
    );
    assert!(data.contains("X-Herald-Message-Id: msg-0001"), "{data}");
    assert!(data.contains("multipart/alternative"), "{data}");
    let text_at = data.find("Content-Type: text/plain").expect("a text part");
    let html_at = data.find("Content-Type: text/html").expect("an html part");
    assert!(
        text_at < html_at,
        "the text part comes first, html is preferred"
    );
    assert!(data.contains("Hello Ana, your plan is gold."), "{data}");
    assert!(
        data.contains("<p>Hello <b>Ana</b>, your plan is gold.</p>"),
        "{data}"
    );
}

/// With STARTTLS offered by a server whose self-signed certificate is trusted, the provider
/// upgrades the connection before logging in and sending.
#[tokio::test]
async fn upgrades_with_starttls_then_logs_in() {
    let server = TestSmtpServer::start(true, Replies::default()).await;
    let channel = EmailChannel {
        username: "herald".to_string(),
        password: "s3cret".to_string(),
        ..channel_for(&server, SmtpTls::StartTls)
    };
    let provider = SmtpProvider::new(&channel).unwrap();
    let outcome = provider.send(&welcome(&ana(), "msg-tls")).await;
    assert_eq!(outcome.status, DeliveryStatus::Successful, "{outcome:?}");
    let received = server.received();
    assert_eq!(received.len(), 1);
    assert!(received[0].over_tls, "the message travelled over TLS");
    assert_eq!(
        received[0].login,
        Some(("herald".to_string(), "s3cret".to_string()))
    );
    assert!(received[0].data.contains("Subject: Welcome, Ana"));
}

/// Without trusting the server's certificate the provider refuses to talk (nothing is sent),
/// and a plain server that does not offer STARTTLS is refused too: both are temporary, for
/// an operator to fix.
#[tokio::test]
async fn an_untrusted_certificate_or_missing_starttls_sends_nothing() {
    let server = TestSmtpServer::start(true, Replies::default()).await;
    let untrusted = EmailChannel {
        test_only_trusted_root_pem: None,
        ..channel_for(&server, SmtpTls::StartTls)
    };
    let outcome = SmtpProvider::new(&untrusted)
        .unwrap()
        .send(&welcome(&ana(), "msg-untrusted"))
        .await;
    assert_eq!(
        outcome.status,
        DeliveryStatus::TemporaryFailure,
        "{outcome:?}"
    );

    let plain = TestSmtpServer::start(false, Replies::default()).await;
    let outcome = SmtpProvider::new(&channel_for(&plain, SmtpTls::StartTls))
        .unwrap()
        .send(&welcome(&ana(), "msg-no-starttls"))
        .await;
    assert_eq!(
        outcome.status,
        DeliveryStatus::TemporaryFailure,
        "{outcome:?}"
    );
    assert!(server.received().is_empty() && plain.received().is_empty());
}

/// "550 mailbox unavailable" for the recipient is a permanent failure that makes the
/// endpoint inactive.
#[tokio::test]
async fn unknown_mailbox_is_permanent_and_marks_the_endpoint_inactive() {
    let replies = Replies {
        rcpt: Some((550, "5.1.1 Mailbox unavailable")),
    };
    let server = TestSmtpServer::start(false, replies).await;
    let provider = SmtpProvider::new(&channel_for(&server, SmtpTls::None)).unwrap();
    let outcome = provider.send(&welcome(&ana(), "msg-550")).await;
    assert_eq!(
        outcome.status,
        DeliveryStatus::PermanentFailure,
        "{outcome:?}"
    );
    assert!(outcome.mark_inactive);
    assert!(outcome.status_message.contains("550"), "{outcome:?}");
    assert!(server.received().is_empty());
}

/// "451 try again later" is a temporary failure; the endpoint stays active.
#[tokio::test]
async fn greylisting_is_temporary() {
    let replies = Replies {
        rcpt: Some((451, "4.7.1 Greylisted, try again later")),
    };
    let server = TestSmtpServer::start(false, replies).await;
    let provider = SmtpProvider::new(&channel_for(&server, SmtpTls::None)).unwrap();
    let outcome = provider.send(&welcome(&ana(), "msg-451")).await;
    assert_eq!(
        outcome.status,
        DeliveryStatus::TemporaryFailure,
        "{outcome:?}"
    );
    assert!(!outcome.mark_inactive);
}

/// A port nobody listens on is a temporary failure.
#[tokio::test]
async fn an_unreachable_server_is_temporary() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let channel = EmailChannel {
        enabled: true,
        host: IpAddr::V4(Ipv4Addr::LOCALHOST).to_string(),
        port,
        tls: SmtpTls::None,
        from_address: "news@shop.example".to_string(),
        ..EmailChannel::default()
    };
    let outcome = SmtpProvider::new(&channel)
        .unwrap()
        .send(&welcome(&ana(), "msg-down"))
        .await;
    assert_eq!(
        outcome.status,
        DeliveryStatus::TemporaryFailure,
        "{outcome:?}"
    );
}

/// Reply codes map to statuses; a 550 about policy or the sender does not blame the address.
#[test]
fn reply_codes_are_classified() {
    assert_eq!(classify_reply(250, "ok").status, DeliveryStatus::Successful);
    assert_eq!(
        classify_reply(421, "closing").status,
        DeliveryStatus::TemporaryFailure
    );
    let unknown_user = classify_reply(551, "user not local");
    assert!(unknown_user.mark_inactive);
    assert_eq!(unknown_user.status, DeliveryStatus::PermanentFailure);
    assert!(classify_reply(553, "mailbox name not allowed").mark_inactive);
    let blocked = classify_reply(550, "IP address on blocklists");
    assert_eq!(blocked.status, DeliveryStatus::PermanentFailure);
    assert!(!blocked.mark_inactive);
    assert!(!classify_reply(554, "transaction failed").mark_inactive);
}

/// Settings that cannot make a provider say which value was wrong.
#[test]
fn bad_settings_are_refused_with_the_value() {
    let channel = EmailChannel {
        host: "127.0.0.1".to_string(),
        port: 25,
        from_address: "not an address".to_string(),
        ..EmailChannel::default()
    };
    let error = SmtpProvider::new(&channel).err().expect("refused");
    assert!(error.to_string().contains("not an address"), "{error}");
}
