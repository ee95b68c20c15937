//! Direct sends (SPEC CHN-6): which content a channel takes, the message event a send
//! records (EVT-2), and the in-app message an endpoint's inbox keeps.

use serde::{Deserialize, Serialize};

use super::endpoint::ChannelType;
use super::template::{InAppTemplate, TemplateType};

/// Most recipients (addresses or users) of one direct send.
pub const MAX_RECIPIENTS: usize = 100;

/// The kind of content a channel sends. A custom webhook receives push content (title, body,
/// data), the closest to a JSON payload.
pub fn content_type_for(channel: ChannelType) -> TemplateType {
    match channel {
        ChannelType::Email => TemplateType::Email,
        ChannelType::Sms => TemplateType::Sms,
        ChannelType::Voice => TemplateType::Voice,
        ChannelType::Apns | ChannelType::ApnsSandbox | ChannelType::Gcm | ChannelType::Custom => {
            TemplateType::Push
        }
        ChannelType::InApp => TemplateType::InApp,
    }
}

/// The event a send records in the endpoint's shard (EVT-2 names).
pub fn send_event_type(channel: ChannelType) -> &'static str {
    match channel {
        ChannelType::Email => "_email.send",
        ChannelType::Sms => "_sms.sent",
        ChannelType::Voice => "_voice.sent",
        ChannelType::Apns | ChannelType::ApnsSandbox | ChannelType::Gcm => "_push.sent",
        ChannelType::InApp => "_inapp.send",
        ChannelType::Custom => "_custom.sent",
    }
}

/// An in-app message kept in an endpoint's inbox until the app reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxMessage {
    /// The send's message id.
    pub message_id: String,
    /// RFC 3339, when it was sent.
    pub sent_at: String,
    /// The rendered content.
    pub content: InAppTemplate,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every push channel sends push content and records `_push.sent`.
    #[test]
    fn push_channels_share_content_and_event() {
        for channel in [
            ChannelType::Apns,
            ChannelType::ApnsSandbox,
            ChannelType::Gcm,
        ] {
            assert_eq!(content_type_for(channel), TemplateType::Push);
            assert_eq!(send_event_type(channel), "_push.sent");
        }
        assert_eq!(send_event_type(ChannelType::Email), "_email.send");
    }
}
