//! The outbox: what every channel sends to while its project has no provider configured (a
//! fresh node), so a newcomer sees rendered messages without setting anything up. One JSON
//! line per message in `<data dir>/outbox/<channel>.jsonl`. With `channels.null_sink` the
//! outbox is a null sink instead: it accepts every message and writes nothing, so benchmarks
//! measure Herald's send path rather than the outbox's disk writes.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::{DeliveryOutcome, DeliveryStatus, OutboundMessage, Provider};
use crate::domain::endpoint::ChannelType;
use crate::domain::template::RenderedMessage;

/// Writes messages as JSON lines, one file per channel.
pub struct OutboxProvider {
    /// `<data dir>/outbox`.
    dir: PathBuf,
    /// One writer per channel file, each behind its own lock so lines never interleave and
    /// channels do not wait for each other.
    files: Mutex<HashMap<ChannelType, Arc<Mutex<File>>>>,
    /// The null sink (`channels.null_sink`): messages are accepted and dropped, no file is
    /// written.
    discard: bool,
}

/// One line of an outbox file.
#[derive(Serialize)]
struct OutboxLine<'a> {
    message_id: &'a str,
    project_id: &'a str,
    endpoint_id: Option<&'a str>,
    channel: &'a str,
    address: &'a str,
    content: &'a RenderedMessage,
    /// RFC 3339, when the line was written.
    time: String,
}

impl OutboxProvider {
    /// An outbox under `data_dir`; files are created on the first message of their channel.
    pub fn new(data_dir: &Path) -> Self {
        Self::with_null_sink(data_dir, false)
    }

    /// An outbox under `data_dir`, or with `null_sink` one that discards every message.
    pub fn with_null_sink(data_dir: &Path, null_sink: bool) -> Self {
        Self {
            dir: data_dir.join("outbox"),
            files: Mutex::new(HashMap::new()),
            discard: null_sink,
        }
    }

    /// The file a channel's messages go to.
    pub fn path(&self, channel: ChannelType) -> PathBuf {
        self.dir
            .join(format!("{}.jsonl", channel.as_str().to_ascii_lowercase()))
    }

    fn file(&self, channel: ChannelType) -> std::io::Result<Arc<Mutex<File>>> {
        let mut files = self.files.lock().expect("outbox lock");
        if let Some(file) = files.get(&channel) {
            return Ok(Arc::clone(file));
        }
        std::fs::create_dir_all(&self.dir)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(channel))?;
        let file = Arc::new(Mutex::new(file));
        files.insert(channel, Arc::clone(&file));
        Ok(file)
    }

    fn append(&self, message: &OutboundMessage) -> std::io::Result<()> {
        let line = OutboxLine {
            message_id: &message.message_id,
            project_id: &message.project_id,
            endpoint_id: message.endpoint_id.as_deref(),
            channel: message.channel.as_str(),
            address: &message.address,
            content: &message.content,
            time: crate::cluster::now_rfc3339(),
        };
        let mut bytes = serde_json::to_vec(&line).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        let file = self.file(message.channel)?;
        let mut file = file.lock().expect("outbox file lock");
        // One write per line on an append-only file: a reader never sees half a line.
        file.write_all(&bytes)?;
        file.flush()
    }
}

#[tonic::async_trait]
impl Provider for OutboxProvider {
    async fn send(&self, message: &OutboundMessage) -> DeliveryOutcome {
        if self.discard {
            return DeliveryOutcome::new(DeliveryStatus::Successful, "discarded by the null sink");
        }
        // Small appends to a local file: cheap enough to run inline.
        match self.append(message) {
            Ok(()) => DeliveryOutcome::new(DeliveryStatus::Successful, "written to the outbox"),
            Err(error) => {
                tracing::warn!(%error, channel = message.channel.as_str(), "outbox write failed");
                DeliveryOutcome::new(
                    DeliveryStatus::TemporaryFailure,
                    format!("outbox write failed: {error}"),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::template::SmsTemplate;

    /// Each message is one JSON line in its channel's file, appended in order.
    #[tokio::test]
    async fn appends_one_json_line_per_message() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = OutboxProvider::new(dir.path());
        for id in ["m1", "m2"] {
            let outcome = outbox
                .send(&OutboundMessage {
                    message_id: id.into(),
                    project_id: "p".into(),
                    endpoint_id: None,
                    channel: ChannelType::Sms,
                    address: "+14155550100".into(),
                    content: RenderedMessage::Sms(SmsTemplate { body: "hi".into() }),
                    origination_number: String::new(),
                })
                .await;
            assert_eq!(outcome.status, DeliveryStatus::Successful);
        }
        let text = std::fs::read_to_string(outbox.path(ChannelType::Sms)).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["message_id"], "m1");
        assert_eq!(lines[1]["content"]["Sms"]["body"], "hi");
    }

    /// The null sink accepts every message and writes no file.
    #[tokio::test]
    async fn null_sink_accepts_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = OutboxProvider::with_null_sink(dir.path(), true);
        let outcome = outbox
            .send(&OutboundMessage {
                message_id: "m1".into(),
                project_id: "p".into(),
                endpoint_id: Some("e1".into()),
                channel: ChannelType::Sms,
                address: "+14155550100".into(),
                content: RenderedMessage::Sms(SmsTemplate { body: "hi".into() }),
                origination_number: String::new(),
            })
            .await;
        assert_eq!(outcome.status, DeliveryStatus::Successful);
        assert!(!dir.path().join("outbox").exists());
    }
}
