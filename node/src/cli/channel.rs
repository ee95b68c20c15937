//! `herald channel ...`: a project's channel settings (SPEC PRJ-3). Secrets are read from
//! environment variables, never from flags (which other users can see in `ps`).

use anyhow::Context;
use herald_proto::v1 as proto;
use herald_proto::v1::channel_response::Settings;
use herald_proto::v1::channels_client::ChannelsClient;
use serde_json::{Value, json};
use tonic::transport::Channel;

use super::ConnectArgs;
use super::output::{Table, print_json, status_error};

/// `herald channel ...`
#[derive(Debug, clap::Args)]
pub struct ChannelArgs {
    #[allow(missing_docs)]
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[allow(missing_docs)]
    #[command(subcommand)]
    pub command: ChannelCommand,
}

/// The channel commands.
#[derive(Debug, clap::Subcommand)]
pub enum ChannelCommand {
    /// Configure email over SMTP.
    Email(EmailChannelArgs),
    /// Print every configured channel of a project (secrets are never printed).
    Get(ProjectRef),
    /// Remove one channel's settings.
    Delete(DeleteChannelArgs),
}

/// Names a project.
#[derive(Debug, clap::Args)]
pub struct ProjectRef {
    /// The project.
    #[arg(long)]
    pub project: String,
}

/// `herald channel email ...`
#[derive(Debug, clap::Args)]
pub struct EmailChannelArgs {
    /// The project.
    #[arg(long)]
    pub project: String,
    /// The SMTP server.
    #[arg(long)]
    pub host: String,
    /// Its port.
    #[arg(long, default_value_t = 587)]
    pub port: u32,
    /// starttls (default), implicit or none.
    #[arg(long, default_value = "starttls")]
    pub tls: String,
    /// Login, when the server asks for one.
    #[arg(long, default_value = "")]
    pub username: String,
    /// Environment variable holding the password (kept when not given).
    #[arg(long, value_name = "VAR")]
    pub password_env: Option<String>,
    /// The sender address.
    #[arg(long)]
    pub from: String,
    /// The sender's display name.
    #[arg(long, default_value = "")]
    pub from_name: String,
    /// Store the settings but keep the channel off.
    #[arg(long)]
    pub disabled: bool,
}

/// `herald channel delete ...`
#[derive(Debug, clap::Args)]
pub struct DeleteChannelArgs {
    /// The project.
    #[arg(long)]
    pub project: String,
    /// EMAIL, SMS, VOICE, APNS, FCM, CUSTOM or IN_APP.
    #[arg(long = "type")]
    pub channel_type: String,
}

/// Runs a channel command.
pub async fn run(channel: Channel, command: ChannelCommand, json: bool) -> anyhow::Result<()> {
    let mut client = ChannelsClient::new(channel);
    match command {
        ChannelCommand::Email(args) => {
            let password = match &args.password_env {
                Some(var) => std::env::var(var)
                    .with_context(|| format!("environment variable {var} is not set"))?,
                None => String::new(),
            };
            let answer = client
                .update_email_channel(proto::UpdateEmailChannelRequest {
                    project_id: args.project,
                    channel: Some(proto::EmailChannel {
                        enabled: !args.disabled,
                        host: args.host,
                        port: args.port,
                        tls: args.tls,
                        username: args.username,
                        password,
                        from_address: args.from,
                        from_name: args.from_name,
                        has_password: false,
                    }),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            show(&[answer], json);
        }
        ChannelCommand::Get(args) => {
            let answer = client
                .get_channels(proto::GetChannelRequest {
                    project_id: args.project,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            show(&answer.channels, json);
        }
        ChannelCommand::Delete(args) => {
            let answer = client
                .delete_channel(proto::DeleteChannelRequest {
                    project_id: args.project,
                    channel_type: args.channel_type.clone(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if json {
                print_json(&json!({ "deleted": answer.deleted }));
            } else if answer.deleted {
                println!("deleted the {} channel", args.channel_type.to_uppercase());
            } else {
                println!(
                    "no {} channel was configured",
                    args.channel_type.to_uppercase()
                );
            }
        }
    }
    Ok(())
}

fn phone_json(c: &proto::PhoneChannel) -> Value {
    json!({
        "enabled": c.enabled,
        "base_url": c.base_url,
        "account": c.account,
        "has_api_key": c.has_api_key,
        "rate_per_second": c.rate_per_second,
        "origination_identities": c.origination_identities.iter().map(|i| json!({
            "kind": i.kind, "value": i.value, "country": i.country,
        })).collect::<Vec<_>>(),
    })
}

/// A channel as JSON: settings without secrets, `has_…` flags instead.
fn channel_json(channel: &proto::ChannelResponse) -> Value {
    let settings = match &channel.settings {
        Some(Settings::Email(c)) => json!({
            "enabled": c.enabled, "host": c.host, "port": c.port, "tls": c.tls,
            "username": c.username, "has_password": c.has_password,
            "from_address": c.from_address, "from_name": c.from_name,
        }),
        Some(Settings::Sms(c)) | Some(Settings::Voice(c)) => phone_json(c),
        Some(Settings::Apns(c)) => json!({
            "enabled": c.enabled, "base_url": c.base_url, "team_id": c.team_id,
            "key_id": c.key_id, "bundle_id": c.bundle_id, "sandbox": c.sandbox,
            "has_private_key": c.has_private_key,
        }),
        Some(Settings::Fcm(c)) => json!({
            "enabled": c.enabled, "base_url": c.base_url, "fcm_project_id": c.fcm_project_id,
            "has_service_account_json": c.has_service_account_json,
        }),
        Some(Settings::Custom(c)) => json!({
            "enabled": c.enabled, "url": c.url, "has_hmac_secret": c.has_hmac_secret,
        }),
        Some(Settings::InApp(c)) => json!({ "enabled": c.enabled }),
        None => Value::Null,
    };
    json!({ "channel_type": channel.channel_type, "configured": channel.configured, "settings": settings })
}

fn show(channels: &[proto::ChannelResponse], json: bool) {
    if json {
        print_json(&Value::Array(channels.iter().map(channel_json).collect()));
        return;
    }
    let mut table = Table::new(&["CHANNEL", "ENABLED", "SETTINGS"]);
    for channel in channels {
        let value = channel_json(channel);
        let enabled = value["settings"]["enabled"].as_bool().unwrap_or(false);
        let mut settings = value["settings"].clone();
        if let Value::Object(map) = &mut settings {
            map.remove("enabled");
        }
        table.push(vec![
            channel.channel_type.clone(),
            if enabled { "yes" } else { "no" }.to_string(),
            settings.to_string(),
        ]);
    }
    print!("{}", table.render());
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::ClientCommand;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        command: ClientCommand,
    }

    /// The documented email command line parses, the password coming from a variable name.
    #[test]
    fn channel_email_command_line_parses() {
        let cli = Cli::try_parse_from([
            "herald",
            "channel",
            "email",
            "--project",
            "p",
            "--host",
            "smtp.example.com",
            "--port",
            "465",
            "--tls",
            "implicit",
            "--username",
            "u",
            "--password-env",
            "SMTP_PASSWORD",
            "--from",
            "a@b.c",
        ])
        .unwrap();
        let ClientCommand::Channel(args) = cli.command else {
            panic!("a channel command");
        };
        let super::ChannelCommand::Email(email) = args.command else {
            panic!("an email command");
        };
        assert_eq!(email.port, 465);
        assert_eq!(email.password_env.as_deref(), Some("SMTP_PASSWORD"));
        assert!(!email.disabled);
        assert!(Cli::try_parse_from(["herald", "channel", "get", "--project", "p"]).is_ok());
    }
}
