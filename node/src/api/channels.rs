//! `herald.v1.Channels`: per-project channel settings (SPEC PRJ-3). Secrets are write-only:
//! answers carry `has_…` flags instead.

use herald_proto::v1 as pb;
use herald_proto::v1::channels_server::Channels;
use tonic::{Request, Response, Status};

use super::status::{invalid_argument, to_status};
use super::{ClusterHandle, check_ids, observed};
use crate::domain::FieldViolation;
use crate::domain::channel::{
    self, ApnsChannel, ChannelConfig, ChannelKind, CustomChannel, DEFAULT_RATE_PER_SECOND,
    EmailChannel, FcmChannel, InAppChannel, OriginationIdentity, PhoneChannel,
};

/// The Channels service.
pub struct ChannelsApi {
    cluster: ClusterHandle,
}

impl ChannelsApi {
    /// The service.
    pub fn new(cluster: ClusterHandle) -> Self {
        Self { cluster }
    }
}

fn email_from(c: pb::EmailChannel, violations: &mut Vec<FieldViolation>) -> ChannelConfig {
    ChannelConfig::Email(EmailChannel {
        enabled: c.enabled,
        host: c.host,
        port: channel::parse_port("channel.port", c.port, violations),
        tls: channel::parse_tls("channel.tls", &c.tls, violations),
        username: c.username,
        password: c.password,
        from_address: c.from_address,
        from_name: c.from_name,
        test_only_trusted_root_pem: None,
    })
}

fn phone_from(c: pb::PhoneChannel, violations: &mut Vec<FieldViolation>) -> PhoneChannel {
    PhoneChannel {
        enabled: c.enabled,
        base_url: c.base_url,
        account: c.account,
        api_key: c.api_key,
        origination_identities: c
            .origination_identities
            .into_iter()
            .enumerate()
            .map(|(i, identity)| OriginationIdentity {
                kind: channel::parse_origination_kind(
                    &format!("channel.origination_identities[{i}].kind"),
                    &identity.kind,
                    violations,
                ),
                value: identity.value,
                country: identity.country,
            })
            .collect(),
        rate_per_second: if c.rate_per_second == 0 {
            DEFAULT_RATE_PER_SECOND
        } else {
            c.rate_per_second
        },
    }
}

fn sms_from(c: pb::PhoneChannel, violations: &mut Vec<FieldViolation>) -> ChannelConfig {
    ChannelConfig::Sms(phone_from(c, violations))
}

fn voice_from(c: pb::PhoneChannel, violations: &mut Vec<FieldViolation>) -> ChannelConfig {
    ChannelConfig::Voice(phone_from(c, violations))
}

fn apns_from(c: pb::ApnsChannel, _: &mut Vec<FieldViolation>) -> ChannelConfig {
    ChannelConfig::Apns(ApnsChannel {
        enabled: c.enabled,
        base_url: c.base_url,
        team_id: c.team_id,
        key_id: c.key_id,
        private_key: c.private_key,
        bundle_id: c.bundle_id,
        sandbox: c.sandbox,
    })
}

fn fcm_from(c: pb::FcmChannel, _: &mut Vec<FieldViolation>) -> ChannelConfig {
    ChannelConfig::Fcm(FcmChannel {
        enabled: c.enabled,
        base_url: c.base_url,
        project_id: c.fcm_project_id,
        service_account_json: c.service_account_json,
    })
}

fn custom_from(c: pb::CustomChannel, _: &mut Vec<FieldViolation>) -> ChannelConfig {
    ChannelConfig::Custom(CustomChannel {
        enabled: c.enabled,
        url: c.url,
        hmac_secret: c.hmac_secret,
    })
}

fn in_app_from(c: pb::InAppChannel, _: &mut Vec<FieldViolation>) -> ChannelConfig {
    ChannelConfig::InApp(InAppChannel { enabled: c.enabled })
}

fn phone_to_proto(c: &PhoneChannel) -> pb::PhoneChannel {
    pb::PhoneChannel {
        enabled: c.enabled,
        base_url: c.base_url.clone(),
        account: c.account.clone(),
        api_key: String::new(),
        origination_identities: c
            .origination_identities
            .iter()
            .map(|identity| pb::OriginationIdentity {
                kind: identity.kind.as_str().to_string(),
                value: identity.value.clone(),
                country: identity.country.clone(),
            })
            .collect(),
        rate_per_second: c.rate_per_second,
        has_api_key: !c.api_key.is_empty(),
    }
}

/// A channel as the API answers it: every secret replaced by whether it is set.
pub fn channel_to_proto(project_id: &str, config: &ChannelConfig) -> pb::ChannelResponse {
    use pb::channel_response::Settings;
    let settings = match config {
        ChannelConfig::Email(c) => Settings::Email(pb::EmailChannel {
            enabled: c.enabled,
            host: c.host.clone(),
            port: u32::from(c.port),
            tls: c.tls.as_str().to_string(),
            username: c.username.clone(),
            password: String::new(),
            from_address: c.from_address.clone(),
            from_name: c.from_name.clone(),
            has_password: !c.password.is_empty(),
        }),
        ChannelConfig::Sms(c) => Settings::Sms(phone_to_proto(c)),
        ChannelConfig::Voice(c) => Settings::Voice(phone_to_proto(c)),
        ChannelConfig::Apns(c) => Settings::Apns(pb::ApnsChannel {
            enabled: c.enabled,
            base_url: c.base_url.clone(),
            team_id: c.team_id.clone(),
            key_id: c.key_id.clone(),
            private_key: String::new(),
            bundle_id: c.bundle_id.clone(),
            sandbox: c.sandbox,
            has_private_key: !c.private_key.is_empty(),
        }),
        ChannelConfig::Fcm(c) => Settings::Fcm(pb::FcmChannel {
            enabled: c.enabled,
            base_url: c.base_url.clone(),
            fcm_project_id: c.project_id.clone(),
            service_account_json: String::new(),
            has_service_account_json: !c.service_account_json.is_empty(),
        }),
        ChannelConfig::Custom(c) => Settings::Custom(pb::CustomChannel {
            enabled: c.enabled,
            url: c.url.clone(),
            hmac_secret: String::new(),
            has_hmac_secret: !c.hmac_secret.is_empty(),
        }),
        ChannelConfig::InApp(c) => Settings::InApp(pb::InAppChannel { enabled: c.enabled }),
    };
    pb::ChannelResponse {
        project_id: project_id.to_string(),
        channel_type: config.kind().as_str().to_string(),
        configured: true,
        settings: Some(settings),
    }
}

impl ChannelsApi {
    /// Validates and stores one channel's settings.
    async fn update<T>(
        &self,
        project_id: String,
        channel: Option<T>,
        convert: fn(T, &mut Vec<FieldViolation>) -> ChannelConfig,
    ) -> Result<pb::ChannelResponse, Status> {
        let cluster = self.cluster.get()?;
        check_ids(&[("project_id", &project_id)], cluster.limits())?;
        let Some(channel) = channel else {
            return Err(invalid_argument(&[FieldViolation::new(
                "channel",
                "is required",
            )]));
        };
        let mut violations = Vec::new();
        let config = convert(channel, &mut violations);
        // A field that did not parse is reported once, not again by the domain checks.
        let unparsed: Vec<String> = violations.iter().map(|v| v.field.clone()).collect();
        violations.extend(
            channel::validate_channel("channel", &config)
                .into_iter()
                .filter(|v| !unparsed.contains(&v.field)),
        );
        if !violations.is_empty() {
            return Err(invalid_argument(&violations));
        }
        let stored = cluster
            .update_channel(&project_id, config)
            .await
            .map_err(to_status)?;
        Ok(channel_to_proto(&project_id, &stored))
    }

    async fn get(
        &self,
        kind: ChannelKind,
        request: pb::GetChannelRequest,
    ) -> Result<pb::ChannelResponse, Status> {
        let cluster = self.cluster.get()?;
        check_ids(&[("project_id", &request.project_id)], cluster.limits())?;
        let stored = cluster
            .get_channel(&request.project_id, kind)
            .await
            .map_err(to_status)?;
        Ok(match stored {
            Some(config) => channel_to_proto(&request.project_id, &config),
            None => pb::ChannelResponse {
                project_id: request.project_id,
                channel_type: kind.as_str().to_string(),
                configured: false,
                settings: None,
            },
        })
    }
}

/// The service impl: an update and a get per channel, generated, plus the rest.
macro_rules! channels_service {
    ($( ($kind:expr, $convert:ident,
         $update:ident, $update_req:ty, $update_name:literal,
         $get:ident, $get_name:literal) ),* ; $($rest:item)*) => {
        #[tonic::async_trait]
        impl Channels for ChannelsApi {
            $(
            async fn $update(&self, request: Request<$update_req>) -> Result<Response<pb::ChannelResponse>, Status> {
                observed($update_name, async {
                    let request = request.into_inner();
                    self.update(request.project_id, request.channel, $convert).await
                })
                .await
            }

            async fn $get(&self, request: Request<pb::GetChannelRequest>) -> Result<Response<pb::ChannelResponse>, Status> {
                observed($get_name, self.get($kind, request.into_inner())).await
            }
            )*
            $($rest)*
        }
    };
}

channels_service! {
    (ChannelKind::Email, email_from,
        update_email_channel, pb::UpdateEmailChannelRequest, "UpdateEmailChannel",
        get_email_channel, "GetEmailChannel"),
    (ChannelKind::Sms, sms_from,
        update_sms_channel, pb::UpdateSmsChannelRequest, "UpdateSmsChannel",
        get_sms_channel, "GetSmsChannel"),
    (ChannelKind::Voice, voice_from,
        update_voice_channel, pb::UpdateVoiceChannelRequest, "UpdateVoiceChannel",
        get_voice_channel, "GetVoiceChannel"),
    (ChannelKind::Apns, apns_from,
        update_apns_channel, pb::UpdateApnsChannelRequest, "UpdateApnsChannel",
        get_apns_channel, "GetApnsChannel"),
    (ChannelKind::Fcm, fcm_from,
        update_fcm_channel, pb::UpdateFcmChannelRequest, "UpdateFcmChannel",
        get_fcm_channel, "GetFcmChannel"),
    (ChannelKind::Custom, custom_from,
        update_custom_channel, pb::UpdateCustomChannelRequest, "UpdateCustomChannel",
        get_custom_channel, "GetCustomChannel"),
    (ChannelKind::InApp, in_app_from,
        update_in_app_channel, pb::UpdateInAppChannelRequest, "UpdateInAppChannel",
        get_in_app_channel, "GetInAppChannel");

    async fn get_channels(
        &self,
        request: Request<pb::GetChannelRequest>,
    ) -> Result<Response<pb::GetChannelsResponse>, Status> {
        observed("GetChannels", async {
            let cluster = self.cluster.get()?;
            let request = request.into_inner();
            check_ids(&[("project_id", &request.project_id)], cluster.limits())?;
            let settings = cluster
                .get_channel_settings(&request.project_id)
                .await
                .map_err(to_status)?;
            let configured = [
                settings.email.map(ChannelConfig::Email),
                settings.sms.map(ChannelConfig::Sms),
                settings.voice.map(ChannelConfig::Voice),
                settings.apns.map(ChannelConfig::Apns),
                settings.fcm.map(ChannelConfig::Fcm),
                settings.custom.map(ChannelConfig::Custom),
                settings.in_app.map(ChannelConfig::InApp),
            ];
            Ok(pb::GetChannelsResponse {
                channels: configured
                    .iter()
                    .flatten()
                    .map(|config| channel_to_proto(&request.project_id, config))
                    .collect(),
                project_id: request.project_id,
            })
        })
        .await
    }

    async fn delete_channel(
        &self,
        request: Request<pb::DeleteChannelRequest>,
    ) -> Result<Response<pb::DeleteChannelResponse>, Status> {
        observed("DeleteChannel", async {
            let cluster = self.cluster.get()?;
            let request = request.into_inner();
            check_ids(&[("project_id", &request.project_id)], cluster.limits())?;
            let kind = ChannelKind::parse(&request.channel_type).ok_or_else(|| {
                invalid_argument(&[FieldViolation::new(
                    "channel_type",
                    format!(
                        "{:?} is not EMAIL, SMS, VOICE, APNS, FCM, CUSTOM or IN_APP",
                        request.channel_type
                    ),
                )])
            })?;
            let deleted = cluster
                .delete_channel(&request.project_id, kind)
                .await
                .map_err(to_status)?;
            Ok(pb::DeleteChannelResponse { deleted })
        })
        .await
    }
}
