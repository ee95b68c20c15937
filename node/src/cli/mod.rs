//! The `herald` client commands: projects, endpoints and events over the public gRPC API.
//!
//! # Layout
//! - this module: the clap commands, the connection to a node, and dispatch.
//! - [`project`]: `herald project create|get|list|delete|settings`.
//! - [`endpoint`]: `herald endpoint put|get|delete|user|delete-user`.
//! - [`import`]: `herald endpoint import`: CSV and JSONL readers, batching.
//! - [`import_job`]: `herald import create|get|list`: import jobs run by the server.
//! - [`events`]: `herald events put`: JSONL reader, grouping into `PutEvents`.
//! - [`bulk`]: what the bulk commands share: concurrent batches, retries, progress, report.
//! - [`send`]: `herald send message|otp` and `herald verify-otp`.
//! - [`channel`]: `herald channel email|get|delete`: a project's channel settings.
//! - [`segment`]: `herald segment create|update|get|list|versions|delete|estimate`.
//! - [`campaign`]: `herald campaign create|update|get|list|versions|delete|pause|resume|activities`
//!   and `herald kpi campaign`.
//! - [`records`]: what users write (flags, CSV cells, JSON lines) and its conversion to proto.
//! - [`output`]: tables, JSON forms of responses, server errors.

pub(crate) mod bulk;
mod campaign;
mod channel;
mod cluster;
mod endpoint;
mod events;
pub(crate) mod import;
mod import_job;
mod output;
mod project;
mod records;
mod segment;
mod send;
mod template;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tonic::transport::{Channel, Endpoint};

pub use campaign::{CampaignArgs, CampaignCommand, KpiArgs, KpiCommand};
pub use channel::{ChannelArgs, ChannelCommand};
use records::{parse_name_number, parse_name_value};
pub use segment::{SegmentArgs, SegmentCommand};
pub use send::{SendArgs, SendCommand, VerifyOtpArgs};

/// How long to wait for the TCP and HTTP/2 connection to a node.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest wait for one call (a batch of 100 endpoints included).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The client commands, flattened into the `herald` command line.
#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Create, read, list, configure and delete projects.
    Project(ProjectArgs),
    /// Write, read, delete and import endpoints.
    Endpoint(EndpointArgs),
    /// Send events.
    Events(EventsArgs),
    /// Show the cluster's nodes, replicas and leaders; remove a node.
    Cluster(ClusterArgs),
    /// Create, version, read, list and delete message templates.
    Template(TemplateArgs),
    /// Define, version, read, list, delete and estimate segments.
    Segment(SegmentArgs),
    /// Import endpoints with jobs the server runs; progress and per-row errors.
    Import(ImportArgs),
    /// Send messages to addresses or users, or a one-time password.
    Send(SendArgs),
    /// Check a one-time password.
    VerifyOtp(VerifyOtpArgs),
    /// Configure, read and delete a project's channels (SMTP server, providers).
    Channel(ChannelArgs),
    /// Create, version, read, list, pause, resume and delete campaigns; list their runs.
    Campaign(CampaignArgs),
    /// Campaign KPIs per day over a date range.
    Kpi(KpiArgs),
}

/// `herald import ...`
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    #[allow(missing_docs)]
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[allow(missing_docs)]
    #[command(subcommand)]
    pub command: ImportCommand,
}

/// The import job commands.
#[derive(Debug, clap::Subcommand)]
pub enum ImportCommand {
    /// Upload a CSV or JSONL file as an import job and wait for it to end.
    Create(ImportCreateArgs),
    /// Print a job's state, counts and row errors.
    Get {
        /// The project id.
        #[arg(long)]
        project: String,
        /// The job id.
        #[arg(long)]
        id: String,
    },
    /// List a project's jobs.
    List {
        /// The project id.
        #[arg(long)]
        project: String,
    },
}

/// `herald import create`
#[derive(Debug, Clone, clap::Args)]
pub struct ImportCreateArgs {
    /// The project id.
    #[arg(long)]
    pub project: String,
    /// The file to upload (or, with --on-node, a path on the node's disk).
    pub file: PathBuf,
    /// The file format [default: from the extension].
    #[arg(long, value_enum)]
    pub format: Option<ImportFormat>,
    /// Endpoints per write on the server (at most 100).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub batch_size: u16,
    /// FILE is on the node's disk: the node reads it, nothing is uploaded.
    #[arg(long)]
    pub on_node: bool,
    /// Also define an imported segment of this name: the endpoints this job writes (SEG-3).
    #[arg(long, value_name = "NAME")]
    pub define_segment: Option<String>,
}

/// `herald template ...`
#[derive(Debug, clap::Args)]
pub struct TemplateArgs {
    #[allow(missing_docs)]
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[allow(missing_docs)]
    #[command(subcommand)]
    pub command: TemplateCommand,
}

/// The template commands. Text parts accept `@FILE` to read the file.
#[derive(Debug, clap::Subcommand)]
pub enum TemplateCommand {
    /// Create version 1 of a template.
    Create(Box<TemplateContentArgs>),
    /// Replace the latest version, or write a new one with --new-version.
    Update(Box<TemplateContentArgs>),
    /// Print a template (the active version unless --version).
    Get(TemplateRefArgs),
    /// Delete one version (--version) or every version.
    Delete(TemplateRefArgs),
    /// List a project's templates (their active versions).
    List {
        /// The project id.
        #[arg(long)]
        project: String,
        /// Only this type.
        #[arg(long = "type")]
        kind: Option<String>,
        /// Only names starting with this.
        #[arg(long)]
        prefix: Option<String>,
    },
    /// List every version of a template.
    Versions(TemplateRefArgs),
    /// Make --version the version sends use.
    Activate(TemplateRefArgs),
}

/// Names one template (and optionally a version).
#[derive(Debug, Clone, clap::Args)]
pub struct TemplateRefArgs {
    /// The project id.
    #[arg(long)]
    pub project: String,
    /// The template name.
    #[arg(long)]
    pub name: String,
    /// EMAIL, SMS, PUSH, VOICE or INAPP.
    #[arg(long = "type")]
    pub kind: String,
    /// A version number.
    #[arg(long)]
    pub version: Option<u32>,
}

/// A template's content; which parts apply depends on --type.
#[derive(Debug, Clone, clap::Args)]
pub struct TemplateContentArgs {
    /// The project id.
    #[arg(long)]
    pub project: String,
    /// The template name.
    #[arg(long)]
    pub name: String,
    /// EMAIL, SMS, PUSH, VOICE or INAPP.
    #[arg(long = "type")]
    pub kind: String,
    /// Email subject.
    #[arg(long)]
    pub subject: Option<String>,
    /// Email HTML part (or @FILE).
    #[arg(long)]
    pub html: Option<String>,
    /// Email text part (or @FILE).
    #[arg(long)]
    pub text: Option<String>,
    /// Body of SMS, push, voice and in-app templates (or @FILE).
    #[arg(long)]
    pub body: Option<String>,
    /// Push title, in-app header.
    #[arg(long)]
    pub title: Option<String>,
    /// Push action: OPEN_APP, DEEP_LINK or URL.
    #[arg(long)]
    pub action: Option<String>,
    /// Push URL, in-app button URL.
    #[arg(long)]
    pub url: Option<String>,
    /// Push or in-app image URL.
    #[arg(long)]
    pub image_url: Option<String>,
    /// A silent (data-only) push.
    #[arg(long)]
    pub silent: bool,
    /// Voice language, e.g. en-US.
    #[arg(long)]
    pub language_code: Option<String>,
    /// Voice id.
    #[arg(long)]
    pub voice_id: Option<String>,
    /// In-app layout.
    #[arg(long)]
    pub layout: Option<String>,
    /// Default for a variable, e.g. User.UserAttributes.FirstName=friend; repeatable.
    #[arg(long = "default", value_name = "VARIABLE=VALUE", value_parser = parse_name_value)]
    pub defaults: Vec<(String, String)>,
    /// A description.
    #[arg(long)]
    pub description: Option<String>,
    /// With update: write a new version (it becomes active) instead of replacing the latest.
    #[arg(long)]
    pub new_version: bool,
}

/// `herald cluster ...`
#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    #[allow(missing_docs)]
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[allow(missing_docs)]
    #[command(subcommand)]
    pub command: ClusterCommand,
}

/// The cluster commands.
#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Nodes and their state, the shard replicas each holds and leads, terms and lag.
    Status,
    /// Drain a node (move its replicas away, hand over its leaderships), then remove it.
    Remove {
        /// The node's id (see `herald cluster status`).
        node_id: u64,
    },
}

/// Where the node is and how to print answers; accepted before or after the subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// gRPC address of a Herald node (host:port).
    #[arg(
        long,
        global = true,
        env = "HERALD_SERVER",
        default_value = "127.0.0.1:50051",
        value_name = "ADDR"
    )]
    pub server: String,
    /// Print answers as JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

impl ConnectArgs {
    /// Connects to the node; fails with the address when it cannot be reached.
    pub async fn connect(&self) -> anyhow::Result<Channel> {
        let uri = if self.server.starts_with("http://") || self.server.starts_with("https://") {
            self.server.clone()
        } else {
            format!("http://{}", self.server)
        };
        let endpoint = Endpoint::from_shared(uri)
            .with_context(|| format!("invalid server address {:?}", self.server))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT);
        endpoint
            .connect()
            .await
            .with_context(|| format!("cannot connect to the herald node at {}", self.server))
    }
}

/// `herald project ...`
#[derive(Debug, clap::Args)]
pub struct ProjectArgs {
    #[allow(missing_docs)]
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[allow(missing_docs)]
    #[command(subcommand)]
    pub command: ProjectCommand,
}

/// The project commands.
#[derive(Debug, clap::Subcommand)]
pub enum ProjectCommand {
    /// Create a project and print it with its new id.
    Create {
        /// Display name of the project.
        name: String,
        /// A tag, repeatable.
        #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_name_value)]
        tags: Vec<(String, String)>,
    },
    /// Print a project and its settings.
    Get {
        /// The project id.
        project_id: String,
    },
    /// List every project.
    List,
    /// Delete a project and all its data.
    Delete {
        /// The project id.
        project_id: String,
    },
    /// Change a project's default campaign settings; settings not given keep their value.
    Settings(ProjectSettingsArgs),
}

/// `herald project settings ID [...]`; 0 means "no limit".
#[derive(Debug, Clone, clap::Args)]
pub struct ProjectSettingsArgs {
    /// The project id.
    pub project_id: String,
    /// Most messages one endpoint gets per day.
    #[arg(long)]
    pub daily: Option<u32>,
    /// Most messages one endpoint gets from one campaign.
    #[arg(long)]
    pub total: Option<u32>,
    /// Most messages per second a campaign sends.
    #[arg(long)]
    pub messages_per_second: Option<u32>,
    /// Longest an event-triggered send may wait, in seconds.
    #[arg(long, value_name = "SECS")]
    pub maximum_duration: Option<u32>,
    /// Most messages one endpoint gets from one campaign in one session.
    #[arg(long)]
    pub session: Option<u32>,
    /// Start of the quiet time, local clock HH:MM ("" clears it).
    #[arg(long, value_name = "HH:MM", value_parser = project::parse_clock_time)]
    pub quiet_start: Option<String>,
    /// End of the quiet time, local clock HH:MM ("" clears it).
    #[arg(long, value_name = "HH:MM", value_parser = project::parse_clock_time)]
    pub quiet_end: Option<String>,
    /// Campaign hook URL ("" removes the hook).
    #[arg(long, value_name = "URL")]
    pub hook_url: Option<String>,
    /// Campaign hook mode.
    #[arg(long, value_name = "FILTER|DELIVERY", value_parser = project::parse_hook_mode)]
    pub hook_mode: Option<String>,
}

/// `herald endpoint ...`
#[derive(Debug, clap::Args)]
pub struct EndpointArgs {
    #[allow(missing_docs)]
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[allow(missing_docs)]
    #[command(subcommand)]
    pub command: EndpointCommand,
}

/// The endpoint commands.
#[derive(Debug, clap::Subcommand)]
pub enum EndpointCommand {
    /// Create or replace an endpoint (UpdateEndpoint).
    Put(Box<EndpointPutArgs>),
    /// Print an endpoint.
    Get(EndpointIdArgs),
    /// Delete an endpoint and print what it was.
    Delete(EndpointIdArgs),
    /// Print every endpoint of a user.
    User(UserIdArgs),
    /// Delete every endpoint of a user.
    DeleteUser(UserIdArgs),
    /// Import endpoints from a CSV or JSONL file, in concurrent batches.
    Import(EndpointImportArgs),
}

/// Names one endpoint.
#[derive(Debug, Clone, clap::Args)]
pub struct EndpointIdArgs {
    /// The project id.
    #[arg(long)]
    pub project: String,
    /// The endpoint id.
    #[arg(long)]
    pub id: String,
}

/// Names one user.
#[derive(Debug, Clone, clap::Args)]
pub struct UserIdArgs {
    /// The project id.
    #[arg(long)]
    pub project: String,
    /// The user id.
    #[arg(long)]
    pub user: String,
}

/// `herald endpoint put`: what to write; an upsert replaces the endpoint's fields whole.
#[derive(Debug, Clone, clap::Args)]
pub struct EndpointPutArgs {
    /// The project id.
    #[arg(long)]
    pub project: String,
    /// The endpoint id.
    #[arg(long)]
    pub id: String,
    /// EMAIL, SMS, VOICE, APNS, APNS_SANDBOX, GCM, FCM (= GCM), IN_APP or CUSTOM; required
    /// for a new endpoint.
    #[arg(long)]
    pub channel: Option<String>,
    /// Email address, E.164 number, device token or URL, as the channel needs.
    #[arg(long)]
    pub address: Option<String>,
    /// An attribute value, repeatable; the same name twice gives a list.
    #[arg(long = "attr", value_name = "NAME=VALUE", value_parser = parse_name_value)]
    pub attributes: Vec<(String, String)>,
    /// A metric, repeatable.
    #[arg(long = "metric", value_name = "NAME=NUMBER", value_parser = parse_name_number)]
    pub metrics: Vec<(String, f64)>,
    /// The user the endpoint belongs to.
    #[arg(long)]
    pub user: Option<String>,
    /// A user attribute value, repeatable; the same name twice gives a list.
    #[arg(long = "user-attr", value_name = "NAME=VALUE", value_parser = parse_name_value)]
    pub user_attributes: Vec<(String, String)>,
    /// ALL (refuses every message) or NONE.
    #[arg(long, value_name = "ALL|NONE")]
    pub opt_out: Option<String>,
    /// ACTIVE or INACTIVE.
    #[arg(long, value_name = "ACTIVE|INACTIVE")]
    pub status: Option<String>,
    /// IANA time zone, e.g. America/Sao_Paulo.
    #[arg(long)]
    pub timezone: Option<String>,
    /// Device platform, e.g. ios.
    #[arg(long)]
    pub platform: Option<String>,
    /// Device platform version.
    #[arg(long)]
    pub platform_version: Option<String>,
    /// Device make.
    #[arg(long)]
    pub make: Option<String>,
    /// Device model.
    #[arg(long)]
    pub model: Option<String>,
    /// Device model version.
    #[arg(long)]
    pub model_version: Option<String>,
    /// App version.
    #[arg(long)]
    pub app_version: Option<String>,
    /// Locale, e.g. pt_BR.
    #[arg(long)]
    pub locale: Option<String>,
    /// ISO 3166-1 alpha-2 country code, e.g. BR.
    #[arg(long, value_name = "CC")]
    pub country: Option<String>,
    /// City.
    #[arg(long)]
    pub city: Option<String>,
    /// Region or state.
    #[arg(long)]
    pub region: Option<String>,
    /// Postal code.
    #[arg(long)]
    pub postal_code: Option<String>,
    /// Latitude, -90..90 (with --longitude).
    #[arg(long, allow_negative_numbers = true)]
    pub latitude: Option<f64>,
    /// Longitude, -180..180 (with --latitude).
    #[arg(long, allow_negative_numbers = true)]
    pub longitude: Option<f64>,
    /// When the facts became true, RFC 3339 [default: now].
    #[arg(long)]
    pub effective_date: Option<String>,
    /// Your id for this write, echoed back.
    #[arg(long)]
    pub request_id: Option<String>,
}

/// The format of an import file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// `herald endpoint import`
#[derive(Debug, Clone, clap::Args)]
pub struct EndpointImportArgs {
    /// The project id.
    #[arg(long)]
    pub project: String,
    /// The file: .csv (header row required) or .jsonl.
    pub file: PathBuf,
    /// The file format [default: from the extension].
    #[arg(long, value_enum)]
    pub format: Option<ImportFormat>,
    /// Endpoints per UpdateEndpointsBatch request (at most 100).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub batch_size: u16,
    /// Batches in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
}

/// `herald events ...`
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    #[allow(missing_docs)]
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[allow(missing_docs)]
    #[command(subcommand)]
    pub command: EventsCommand,
}

/// The event commands.
#[derive(Debug, clap::Subcommand)]
pub enum EventsCommand {
    /// Send the events of a JSONL file (PutEvents), in concurrent batches.
    Put(EventsPutArgs),
}

/// `herald events put`
#[derive(Debug, Clone, clap::Args)]
pub struct EventsPutArgs {
    /// The project id.
    #[arg(long)]
    pub project: String,
    /// One event per line: {"endpoint_id", "event_type", and optionally "event_id",
    /// "timestamp", "attributes", "metrics", "session_id"}.
    pub file: PathBuf,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
}

/// Runs a client command against the node named by its `--server`.
pub async fn run(command: ClientCommand) -> anyhow::Result<()> {
    match command {
        ClientCommand::Project(arguments) => {
            let channel = arguments.connect.connect().await?;
            project::run(channel, arguments.command, arguments.connect.json).await
        }
        ClientCommand::Endpoint(arguments) => {
            let channel = arguments.connect.connect().await?;
            endpoint::run(channel, arguments.command, arguments.connect.json).await
        }
        ClientCommand::Template(arguments) => {
            let channel = arguments.connect.connect().await?;
            template::run(channel, arguments.command, arguments.connect.json).await
        }
        ClientCommand::Import(arguments) => {
            let channel = arguments.connect.connect().await?;
            import_job::run(channel, arguments.command, arguments.connect.json).await
        }
        ClientCommand::Segment(arguments) => {
            let channel = arguments.connect.connect().await?;
            segment::run(channel, arguments.command, arguments.connect.json).await
        }
        ClientCommand::Cluster(arguments) => {
            let channel = arguments.connect.connect().await?;
            cluster::run(channel, arguments.command, arguments.connect.json).await
        }
        ClientCommand::Events(arguments) => {
            let channel = arguments.connect.connect().await?;
            match arguments.command {
                EventsCommand::Put(put) => events::run(channel, put, arguments.connect.json).await,
            }
        }
        ClientCommand::Send(arguments) => {
            let channel = arguments.connect.connect().await?;
            send::run(channel, arguments.command, arguments.connect.json).await
        }
        ClientCommand::Channel(arguments) => {
            let channel = arguments.connect.connect().await?;
            channel::run(channel, arguments.command, arguments.connect.json).await
        }
        ClientCommand::Campaign(arguments) => {
            let channel = arguments.connect.connect().await?;
            campaign::run(channel, arguments.command, arguments.connect.json).await
        }
        ClientCommand::Kpi(arguments) => {
            let channel = arguments.connect.connect().await?;
            campaign::run_kpi(channel, arguments.command, arguments.connect.json).await
        }
        ClientCommand::VerifyOtp(arguments) => {
            let channel = arguments.connect.connect().await?;
            send::verify(channel, arguments).await
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use herald_proto::v1 as proto;

    use super::*;

    /// The client commands as `main` mounts them.
    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(subcommand)]
        command: ClientCommand,
    }

    fn parse(arguments: &[&str]) -> ClientCommand {
        let mut all = vec!["herald"];
        all.extend_from_slice(arguments);
        match TestCli::try_parse_from(all) {
            Ok(cli) => cli.command,
            Err(error) => panic!("{error}"),
        }
    }

    /// The command definitions are consistent (clap's own checks).
    #[test]
    fn commands_are_well_formed() {
        use clap::CommandFactory;
        TestCli::command().debug_assert();
    }

    /// `--server` and `--json` work after the subcommand too, and default to loopback.
    #[test]
    fn connect_flags_are_global() {
        let ClientCommand::Project(arguments) =
            parse(&["project", "list", "--server", "n1:7", "--json"])
        else {
            panic!("not a project command");
        };
        assert_eq!(arguments.connect.server, "n1:7");
        assert!(arguments.connect.json);
        let ClientCommand::Project(arguments) = parse(&["project", "get", "p1"]) else {
            panic!("not a project command");
        };
        if std::env::var_os("HERALD_SERVER").is_none() {
            assert_eq!(arguments.connect.server, "127.0.0.1:50051");
        }
        assert!(!arguments.connect.json);
    }

    /// `endpoint put` flags build the request, a repeated attribute giving a list.
    #[test]
    fn endpoint_put_flags_build_the_request() {
        let command = parse(&[
            "endpoint",
            "put",
            "--project",
            "p1",
            "--id",
            "e1",
            "--channel",
            "FCM",
            "--address",
            "token",
            "--attr",
            "plan=pro",
            "--attr",
            "plan=max",
            "--metric",
            "score=2.5",
            "--user",
            "u1",
            "--user-attr",
            "name=Ana",
            "--opt-out",
            "ALL",
            "--timezone",
            "America/Sao_Paulo",
            "--country",
            "BR",
            "--latitude",
            "-8.05",
            "--longitude",
            "-34.9",
        ]);
        let ClientCommand::Endpoint(EndpointArgs {
            command: EndpointCommand::Put(arguments),
            ..
        }) = command
        else {
            panic!("not endpoint put");
        };
        let request = endpoint::record_from_flags(*arguments)
            .into_request()
            .expect("valid flags");
        assert_eq!(request.channel_type, proto::ChannelType::Gcm as i32);
        assert_eq!(request.attributes["plan"].values, vec!["pro", "max"]);
        assert_eq!(request.metrics["score"], 2.5);
        assert_eq!(request.opt_out, proto::OptOut::All as i32);
        let user = request.user.expect("user");
        assert_eq!(user.user_attributes["name"].values, vec!["Ana"]);
        let location = request.location.expect("location");
        assert_eq!(
            (location.latitude, location.longitude),
            (Some(-8.05), Some(-34.9))
        );
    }

    /// Bad flag values are refused before connecting, naming the value.
    #[test]
    fn bad_flag_values_are_refused() {
        let error = TestCli::try_parse_from([
            "herald",
            "endpoint",
            "put",
            "--project",
            "p",
            "--id",
            "e",
            "--attr",
            "plan",
        ])
        .expect_err("no =");
        assert!(error.to_string().contains("\"plan\""), "{error}");
        let error = TestCli::try_parse_from([
            "herald",
            "endpoint",
            "import",
            "--project",
            "p",
            "f.csv",
            "--batch-size",
            "101",
        ])
        .expect_err("batch too big");
        assert!(error.to_string().contains("101"), "{error}");
        let error = TestCli::try_parse_from([
            "herald",
            "project",
            "settings",
            "p1",
            "--quiet-start",
            "7pm",
        ])
        .expect_err("bad clock time");
        assert!(error.to_string().contains("\"7pm\""), "{error}");
    }
}
