//! A shard's in-memory columnar index of its endpoints, for segment estimates and sends.
//!
//! One row per endpoint. Low-cardinality texts (app version, device type, make, model,
//! platform, country, attribute names and values) are dictionary-encoded into `u32` ids per
//! column; last-seen is Unix seconds; coordinates and metrics stay `f64`, exactly what the
//! plain evaluator ([`super::segment::matches`]) reads, so both agree to the bit. A row's
//! attributes and metrics sit together in an arena.
//!
//! A segment is evaluated one condition at a time into bitsets over rows, combined with
//! AND/OR/NOT as its groups say. A text condition is decided once per distinct value (a
//! lookup table over the dictionary), so scanning a column costs one table lookup per row.
//! Rows are split over threads when there are many.
//!
//! A row also lists the import jobs whose imported segments hold it (SEG-3), as ids of a
//! dictionary of job ids; an imported segment is one scan of that short list per row.
//!
//! Updates cost O(1) amortised: a removed row is a tombstone reused by the next insert; a
//! row whose attributes grow moves to the end of its arena, which is compacted once half of
//! it is garbage; dictionary entries are reference-counted and recycled.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::endpoint::ChannelType;
use super::segment::{
    Combination, EndpointFacts, GpsPoint, MetricDimension, PreparedAttribute, PreparedSet, Recency,
    Result, SegmentDefinition, SegmentDimensions, SegmentReference, SegmentResolver, SegmentRule,
    SetDimension, SetKind, SourceCombination, resolve_references,
};

/// A segment with every reference resolved: evaluable on any shard's index.
///
/// Compile once per estimate or campaign run (SEG-4 re-evaluates at run time) and send the
/// same compiled segment to every shard, so all shards judge by the same versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompiledSegment {
    rule: SegmentRule,
    /// Rules of the segments referred to, directly or not, sorted by reference.
    references: Vec<(SegmentReference, SegmentRule)>,
}

impl CompiledSegment {
    /// Resolves the references of `definition` through `resolver`.
    ///
    /// Fails as [`super::segment::matches`] does: a missing segment, a cycle, or references
    /// nested deeper than [`super::segment::MAX_REFERENCE_DEPTH`].
    pub fn compile<'a, R>(definition: &SegmentDefinition, resolver: &R) -> Result<Self>
    where
        R: SegmentResolver<'a> + ?Sized,
    {
        let references = resolve_references(&definition.rule, resolver)?
            .into_iter()
            .map(|(reference, source)| (reference, source.rule.clone()))
            .collect();
        Ok(Self {
            rule: definition.rule.clone(),
            references,
        })
    }

    /// Position of `reference` in `references`.
    fn slot(&self, reference: &SegmentReference) -> Option<usize> {
        self.references
            .binary_search_by(|(known, _)| known.cmp(reference))
            .ok()
    }
}

/// Every channel, in the order of the codes stored in the channel column.
const CHANNELS: [ChannelType; 8] = [
    ChannelType::Email,
    ChannelType::Sms,
    ChannelType::Voice,
    ChannelType::Apns,
    ChannelType::ApnsSandbox,
    ChannelType::Gcm,
    ChannelType::InApp,
    ChannelType::Custom,
];

/// Code of `channel` in the channel column: its position in [`CHANNELS`].
fn channel_code(channel: ChannelType) -> u8 {
    // Exhaustive, so a new channel type does not compile until it has a code.
    match channel {
        ChannelType::Email => 0,
        ChannelType::Sms => 1,
        ChannelType::Voice => 2,
        ChannelType::Apns => 3,
        ChannelType::ApnsSandbox => 4,
        ChannelType::Gcm => 5,
        ChannelType::InApp => 6,
        ChannelType::Custom => 7,
    }
}

/// The dictionary-encoded text fields of a row.
#[derive(Debug, Clone, Copy)]
enum TextField {
    AppVersion,
    DeviceType,
    Make,
    Model,
    Platform,
    Country,
}

impl TextField {
    const ALL: [Self; 6] = [
        Self::AppVersion,
        Self::DeviceType,
        Self::Make,
        Self::Model,
        Self::Platform,
        Self::Country,
    ];

    fn of(self, facts: &EndpointFacts) -> &str {
        match self {
            Self::AppVersion => &facts.app_version,
            Self::DeviceType => &facts.device_type,
            Self::Make => &facts.make,
            Self::Model => &facts.model,
            Self::Platform => &facts.platform,
            Self::Country => &facts.country,
        }
    }

    fn dimension(self, dimensions: &SegmentDimensions) -> Option<&SetDimension> {
        let demographic = &dimensions.demographic;
        match self {
            Self::AppVersion => demographic.app_version.as_ref(),
            Self::DeviceType => demographic.device_type.as_ref(),
            Self::Make => demographic.make.as_ref(),
            Self::Model => demographic.model.as_ref(),
            Self::Platform => demographic.platform.as_ref(),
            Self::Country => dimensions.location.country.as_ref(),
        }
    }
}

/// Endpoint attributes and user attributes, each with its own names, values and arena.
const ENDPOINT_SCOPE: usize = 0;
const USER_SCOPE: usize = 1;

/// Last-seen value of a row never seen; no real timestamp is this small.
const NEVER_SEEN: i64 = i64::MIN;

/// Bytes an `Arc<str>` allocation spends beyond its text (the two reference counts).
const ARC_HEADER_BYTES: usize = 2 * size_of::<usize>();

/// Distinct texts of one column, each with a `u32` id and a count of rows using it.
#[derive(Debug, Default)]
struct Dictionary {
    ids: HashMap<Arc<str>, u32>,
    /// By id; an entry without text is free for reuse.
    entries: Vec<DictionaryEntry>,
    free: Vec<u32>,
}

#[derive(Debug)]
struct DictionaryEntry {
    text: Option<Arc<str>>,
    uses: u32,
}

impl Dictionary {
    /// The id of `text`, counting one more use of it.
    fn intern(&mut self, text: &str) -> u32 {
        if let Some(&id) = self.ids.get(text) {
            self.entries[id as usize].uses += 1;
            return id;
        }
        let text: Arc<str> = Arc::from(text);
        let entry = DictionaryEntry {
            text: Some(Arc::clone(&text)),
            uses: 1,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.entries[id as usize] = entry;
                id
            }
            None => {
                self.entries.push(entry);
                to_u32(self.entries.len() - 1)
            }
        };
        self.ids.insert(text, id);
        id
    }

    /// Counts one use of `id` less, freeing the id after its last use.
    fn release(&mut self, id: u32) {
        let entry = &mut self.entries[id as usize];
        entry.uses -= 1;
        if entry.uses == 0 {
            if let Some(text) = entry.text.take() {
                self.ids.remove(&text);
            }
            self.free.push(id);
        }
    }

    fn find(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    /// `test` of every id's text, by id; free ids are false.
    fn table(&self, test: impl Fn(&str) -> bool) -> Vec<bool> {
        self.entries
            .iter()
            .map(|entry| entry.text.as_deref().is_some_and(&test))
            .collect()
    }

    fn index_bytes(&self) -> usize {
        map_bytes(&self.ids) + vec_bytes(&self.entries) + vec_bytes(&self.free)
    }

    fn string_bytes(&self) -> usize {
        self.ids
            .keys()
            .map(|text| text.len() + ARC_HEADER_BYTES)
            .sum()
    }
}

/// A dictionary-encoded text column.
#[derive(Debug, Default)]
struct TextColumn {
    dictionary: Dictionary,
    /// Dictionary id by row.
    ids: Vec<u32>,
}

/// Where a row's items are in an arena.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    start: u32,
    len: u32,
}

/// Variable-length items of each row, stored contiguously.
#[derive(Debug)]
struct Arena<T> {
    items: Vec<T>,
    /// By row.
    spans: Vec<Span>,
    /// Items no row points at any more.
    garbage: usize,
    /// Garbage tolerated before compaction is considered, so small arenas never compact.
    compact_after: usize,
}

impl<T: Copy> Arena<T> {
    fn new(compact_after: usize) -> Self {
        Self {
            items: Vec::new(),
            spans: Vec::new(),
            garbage: 0,
            compact_after,
        }
    }

    fn add_row(&mut self) {
        self.spans.push(Span::default());
    }

    fn row(&self, row: usize) -> &[T] {
        let span = self.spans[row];
        let start = span.start as usize;
        &self.items[start..start + span.len as usize]
    }

    /// Replaces the items of `row`: in place when they fit, else at the end.
    fn set(&mut self, row: usize, items: &[T]) {
        let span = self.spans[row];
        let len = to_u32(items.len());
        if len <= span.len {
            let start = span.start as usize;
            self.items[start..start + items.len()].copy_from_slice(items);
            self.garbage += (span.len - len) as usize;
            self.spans[row].len = len;
        } else {
            self.garbage += span.len as usize;
            let start = to_u32(self.items.len());
            self.items.extend_from_slice(items);
            self.spans[row] = Span { start, len };
        }
        if self.garbage > self.compact_after && self.garbage > self.items.len() / 2 {
            self.compact();
        }
    }

    fn compact(&mut self) {
        let mut items = Vec::with_capacity(self.items.len() - self.garbage);
        for span in &mut self.spans {
            let start = span.start as usize;
            let new_start = to_u32(items.len());
            items.extend_from_slice(&self.items[start..start + span.len as usize]);
            span.start = new_start;
        }
        self.items = items;
        self.garbage = 0;
    }

    fn index_bytes(&self) -> usize {
        vec_bytes(&self.items) + vec_bytes(&self.spans)
    }
}

/// One value of one attribute of a row.
#[derive(Debug, Clone, Copy)]
struct AttributeEntry {
    /// Id in the scope's attribute names.
    name: u32,
    /// Id in that name's value dictionary.
    value: u32,
}

/// One metric of a row.
#[derive(Debug, Clone, Copy)]
struct MetricEntry {
    /// Id in the metric names.
    name: u32,
    value: f64,
}

/// How the index spends threads and memory; tests shrink the thresholds to exercise them.
#[derive(Debug, Clone, Copy)]
struct Tuning {
    /// Most threads one evaluation uses.
    threads: usize,
    /// Fewest 64-row words worth a thread of their own.
    min_words_per_thread: usize,
    /// Arena garbage tolerated before compaction is considered.
    compact_after: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism()
                .map_or(1, NonZeroUsize::get)
                .min(8),
            // 131,072 rows: below that a thread costs more than it saves.
            min_words_per_thread: 2048,
            compact_after: 1 << 16,
        }
    }
}

/// Memory an index holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexMemory {
    /// Columns, arenas, bitsets, hash tables and dictionary bookkeeping.
    pub index_bytes: usize,
    /// Endpoint ids and distinct dictionary texts, each stored once.
    pub string_bytes: usize,
}

/// The endpoints of one shard, laid out for fast segment evaluation.
#[derive(Debug)]
pub struct SegmentIndex {
    /// Row of each live endpoint id.
    rows: HashMap<Arc<str>, u32>,
    /// Endpoint id by row; `None` for a removed row awaiting reuse.
    keys: Vec<Option<Arc<str>>>,
    free_rows: Vec<u32>,
    /// Bit per row: set when the row holds an endpoint.
    live: Vec<u64>,
    /// Channel code by row.
    channels: Vec<u8>,
    /// By [`TextField`].
    texts: [TextColumn; 6],
    /// Unix seconds by row, [`NEVER_SEEN`] when never seen.
    last_seen: Vec<i64>,
    /// Degrees by row, NaN when unknown.
    latitudes: Vec<f64>,
    /// Degrees by row, NaN when unknown.
    longitudes: Vec<f64>,
    /// By scope ([`ENDPOINT_SCOPE`], [`USER_SCOPE`]).
    attribute_names: [Dictionary; 2],
    /// By scope, then by attribute name id.
    attribute_values: [Vec<Dictionary>; 2],
    /// By scope.
    attributes: [Arena<AttributeEntry>; 2],
    metric_names: Dictionary,
    metrics: Arena<MetricEntry>,
    /// Ids of the import jobs that hold a row in their imported segment.
    import_jobs: Dictionary,
    /// Ids in `import_jobs` by row, each at most once.
    imported: Arena<u32>,
    tuning: Tuning,
}

impl Default for SegmentIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl SegmentIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::with_tuning(Tuning::default())
    }

    fn with_tuning(tuning: Tuning) -> Self {
        Self {
            rows: HashMap::new(),
            keys: Vec::new(),
            free_rows: Vec::new(),
            live: Vec::new(),
            channels: Vec::new(),
            texts: Default::default(),
            last_seen: Vec::new(),
            latitudes: Vec::new(),
            longitudes: Vec::new(),
            attribute_names: Default::default(),
            attribute_values: Default::default(),
            attributes: [
                Arena::new(tuning.compact_after),
                Arena::new(tuning.compact_after),
            ],
            metric_names: Dictionary::default(),
            metrics: Arena::new(tuning.compact_after),
            import_jobs: Dictionary::default(),
            imported: Arena::new(tuning.compact_after),
            tuning,
        }
    }

    /// Endpoints in the index.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the index holds no endpoint.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Whether endpoint `key` is in the index.
    pub fn contains(&self, key: &str) -> bool {
        self.rows.contains_key(key)
    }

    /// Adds endpoint `key`, or replaces what the index knows of it, imported segments
    /// included.
    pub fn upsert(&mut self, key: &str, facts: &EndpointFacts) {
        let row = match self.rows.get(key) {
            Some(&row) => {
                self.release_row(row as usize);
                self.release_imported(row as usize);
                row as usize
            }
            None => self.add_row(key),
        };
        self.write_row(row, facts);
        let imported: Vec<u32> = facts
            .imported_by
            .iter()
            .map(|job| self.import_jobs.intern(job))
            .collect();
        self.imported.set(row, &imported);
    }

    /// Adds endpoint `key`, or replaces what the index knows of it, keeping the imported
    /// segments that hold it (`facts.imported_by` is not read): how a shard applies an
    /// endpoint write, since memberships are records of their own.
    pub fn upsert_keeping_imports(&mut self, key: &str, facts: &EndpointFacts) {
        let row = match self.rows.get(key) {
            Some(&row) => {
                self.release_row(row as usize);
                row as usize
            }
            None => self.add_row(key),
        };
        self.write_row(row, facts);
    }

    /// Puts endpoint `key` in the imported segment of job `import_job_id`; false when the
    /// endpoint is not in the index (nothing changes then).
    pub fn add_imported(&mut self, key: &str, import_job_id: &str) -> bool {
        let Some(&row) = self.rows.get(key) else {
            return false;
        };
        let row = row as usize;
        if let Some(job) = self.import_jobs.find(import_job_id)
            && self.imported.row(row).contains(&job)
        {
            return true;
        }
        let job = self.import_jobs.intern(import_job_id);
        let mut jobs = self.imported.row(row).to_vec();
        jobs.push(job);
        self.imported.set(row, &jobs);
        true
    }

    /// Removes endpoint `key`; false if it was not there.
    pub fn remove(&mut self, key: &str) -> bool {
        let Some(row) = self.rows.remove(key) else {
            return false;
        };
        let row = row as usize;
        self.release_row(row);
        self.release_imported(row);
        for arena in &mut self.attributes {
            arena.set(row, &[]);
        }
        self.metrics.set(row, &[]);
        self.imported.set(row, &[]);
        self.keys[row] = None;
        self.live[row / 64] &= !(1 << (row % 64));
        self.free_rows.push(to_u32(row));
        true
    }

    /// How many endpoints are members of `segment` at `now`.
    pub fn count(&self, segment: &CompiledSegment, now: DateTime<Utc>) -> u64 {
        self.evaluate(segment, now)
            .iter()
            .map(|word| u64::from(word.count_ones()))
            .sum()
    }

    /// Ids of the endpoints that are members of `segment` at `now`, in no particular order.
    pub fn members<'a>(
        &'a self,
        segment: &CompiledSegment,
        now: DateTime<Utc>,
    ) -> impl Iterator<Item = &'a str> + use<'a> {
        self.evaluate(segment, now)
            .into_iter()
            .enumerate()
            .flat_map(|(word_index, word)| set_bits(word).map(move |bit| word_index * 64 + bit))
            .filter_map(|row| self.keys[row].as_deref())
    }

    /// Bytes of the index beyond its strings (see [`IndexMemory`]).
    pub fn memory_bytes(&self) -> usize {
        self.memory().index_bytes
    }

    /// Bytes the index holds, split into structure and strings.
    pub fn memory(&self) -> IndexMemory {
        let texts: usize = self
            .texts
            .iter()
            .map(|column| vec_bytes(&column.ids) + column.dictionary.index_bytes())
            .sum();
        let attribute_dictionaries: usize = self
            .attribute_names
            .iter()
            .chain(self.attribute_values.iter().flatten())
            .map(Dictionary::index_bytes)
            .sum::<usize>()
            + self.attribute_values.iter().map(vec_bytes).sum::<usize>();
        let index_bytes = map_bytes(&self.rows)
            + vec_bytes(&self.keys)
            + vec_bytes(&self.free_rows)
            + vec_bytes(&self.live)
            + vec_bytes(&self.channels)
            + texts
            + vec_bytes(&self.last_seen)
            + vec_bytes(&self.latitudes)
            + vec_bytes(&self.longitudes)
            + attribute_dictionaries
            + self
                .attributes
                .iter()
                .map(Arena::index_bytes)
                .sum::<usize>()
            + self.metric_names.index_bytes()
            + self.metrics.index_bytes()
            + self.import_jobs.index_bytes()
            + self.imported.index_bytes();
        let dictionary_strings: usize = self
            .texts
            .iter()
            .map(|column| &column.dictionary)
            .chain(self.attribute_names.iter())
            .chain(self.attribute_values.iter().flatten())
            .chain([&self.metric_names, &self.import_jobs])
            .map(Dictionary::string_bytes)
            .sum();
        let key_strings: usize = self
            .rows
            .keys()
            .map(|key| key.len() + ARC_HEADER_BYTES)
            .sum();
        IndexMemory {
            index_bytes,
            string_bytes: key_strings + dictionary_strings,
        }
    }

    /// A new row for `key`: a reused tombstone, or one more at the end.
    fn add_row(&mut self, key: &str) -> usize {
        let row = match self.free_rows.pop() {
            Some(row) => row as usize,
            None => {
                let row = self.keys.len();
                self.keys.push(None);
                self.channels.push(0);
                for column in &mut self.texts {
                    column.ids.push(0);
                }
                self.last_seen.push(NEVER_SEEN);
                self.latitudes.push(f64::NAN);
                self.longitudes.push(f64::NAN);
                for arena in &mut self.attributes {
                    arena.add_row();
                }
                self.metrics.add_row();
                self.imported.add_row();
                if row.is_multiple_of(64) {
                    self.live.push(0);
                }
                row
            }
        };
        let key: Arc<str> = Arc::from(key);
        self.keys[row] = Some(Arc::clone(&key));
        self.rows.insert(key, to_u32(row));
        self.live[row / 64] |= 1 << (row % 64);
        row
    }

    /// Gives back the dictionary uses of a live row, before it is rewritten or removed.
    fn release_row(&mut self, row: usize) {
        for column in &mut self.texts {
            column.dictionary.release(column.ids[row]);
        }
        for scope in [ENDPOINT_SCOPE, USER_SCOPE] {
            for entry in self.attributes[scope].row(row) {
                self.attribute_values[scope][entry.name as usize].release(entry.value);
                self.attribute_names[scope].release(entry.name);
            }
        }
        for entry in self.metrics.row(row) {
            self.metric_names.release(entry.name);
        }
    }

    /// Gives back the import job ids of a live row, before they are rewritten or removed.
    fn release_imported(&mut self, row: usize) {
        for &job in self.imported.row(row) {
            self.import_jobs.release(job);
        }
    }

    fn write_row(&mut self, row: usize, facts: &EndpointFacts) {
        self.channels[row] = channel_code(facts.channel);
        for field in TextField::ALL {
            let column = &mut self.texts[field as usize];
            column.ids[row] = column.dictionary.intern(field.of(facts));
        }
        self.last_seen[row] = facts.last_seen.map_or(NEVER_SEEN, |seen| seen.timestamp());
        let (latitude, longitude) = facts.coordinates().unwrap_or((f64::NAN, f64::NAN));
        self.latitudes[row] = latitude;
        self.longitudes[row] = longitude;
        let scopes = [
            (ENDPOINT_SCOPE, &facts.attributes),
            (USER_SCOPE, &facts.user_attributes),
        ];
        let mut entries = Vec::new();
        for (scope, attributes) in scopes {
            entries.clear();
            for (name, values) in attributes {
                for value in values {
                    let name_id = self.attribute_names[scope].intern(name);
                    let dictionaries = &mut self.attribute_values[scope];
                    if dictionaries.len() <= name_id as usize {
                        dictionaries.resize_with(name_id as usize + 1, Dictionary::default);
                    }
                    let value_id = dictionaries[name_id as usize].intern(value);
                    entries.push(AttributeEntry {
                        name: name_id,
                        value: value_id,
                    });
                }
            }
            self.attributes[scope].set(row, &entries);
        }
        let metrics: Vec<MetricEntry> = facts
            .metrics
            .iter()
            .map(|(name, &value)| MetricEntry {
                name: self.metric_names.intern(name),
                value,
            })
            .collect();
        self.metrics.set(row, &metrics);
    }

    /// The member bitset of `segment`, one bit per row, split over threads when large.
    fn evaluate(&self, segment: &CompiledSegment, now: DateTime<Utc>) -> Vec<u64> {
        let plan = self.plan(segment, now);
        let words = self.live.len();
        let threads = self
            .tuning
            .threads
            .min(words / self.tuning.min_words_per_thread.max(1))
            .max(1);
        if threads == 1 {
            return Evaluation::new(self, &plan, 0..words).run();
        }
        let chunk = words.div_ceil(threads);
        let plan = &plan;
        std::thread::scope(|scope| {
            let parts: Vec<_> = (0..threads)
                .map(|part| {
                    let range = (part * chunk).min(words)..((part + 1) * chunk).min(words);
                    scope.spawn(move || Evaluation::new(self, plan, range).run())
                })
                .collect();
            let mut bits = Vec::with_capacity(words);
            for part in parts {
                match part.join() {
                    Ok(part) => bits.extend(part),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            bits
        })
    }

    /// `segment` bound to this index's dictionaries: lookup tables instead of texts.
    fn plan(&self, segment: &CompiledSegment, now: DateTime<Utc>) -> Plan {
        Plan {
            root: self.plan_rule(&segment.rule, segment, now),
            references: segment
                .references
                .iter()
                .map(|(_, rule)| self.plan_rule(rule, segment, now))
                .collect(),
        }
    }

    fn plan_rule(
        &self,
        rule: &SegmentRule,
        segment: &CompiledSegment,
        now: DateTime<Utc>,
    ) -> RulePlan {
        match rule {
            SegmentRule::Dimensions(dimensions) => {
                RulePlan::Dimensions(self.plan_dimensions(dimensions, now))
            }
            SegmentRule::Groups(list) => RulePlan::Groups {
                include: list.include,
                groups: list
                    .groups
                    .iter()
                    .map(|group| GroupPlan {
                        dimensions: group
                            .dimensions
                            .iter()
                            .map(|dimensions| self.plan_dimensions(dimensions, now))
                            .collect(),
                        dimension_type: group.dimension_type,
                        sources: group
                            .source_segments
                            .iter()
                            .map(|reference| segment.slot(reference))
                            .collect(),
                        source_type: group.source_type,
                        exclude_sources: group.segment_type == SetKind::Exclusive,
                    })
                    .collect(),
            },
            SegmentRule::Imported { import_job_id } => {
                RulePlan::Imported(self.import_jobs.find(import_job_id))
            }
        }
    }

    fn plan_dimensions(
        &self,
        dimensions: &SegmentDimensions,
        now: DateTime<Utc>,
    ) -> Vec<Condition> {
        let mut conditions = Vec::new();
        if let Some(recency) = dimensions.recency {
            conditions.push(Condition::Recency {
                recency,
                now_second: now.timestamp(),
            });
        }
        if let Some(channel) = &dimensions.demographic.channel {
            conditions.push(Condition::Channel(
                CHANNELS.map(|candidate| channel.matches_channel(candidate)),
            ));
        }
        for field in TextField::ALL {
            if let Some(set) = field.dimension(dimensions) {
                let prepared = PreparedSet::new(set);
                let column = &self.texts[field as usize];
                conditions.push(Condition::Text {
                    field,
                    table: column.dictionary.table(|text| prepared.matches(text)),
                });
            }
        }
        if let Some(point) = dimensions.location.gps_point {
            conditions.push(Condition::Gps(point));
        }
        let scopes = [
            (ENDPOINT_SCOPE, &dimensions.attributes),
            (USER_SCOPE, &dimensions.user_attributes),
        ];
        for (scope, attributes) in scopes {
            for (name, attribute) in attributes {
                let prepared = PreparedAttribute::new(attribute);
                let name = self.attribute_names[scope].find(name);
                let table = name.map_or_else(Vec::new, |name| {
                    self.attribute_values[scope][name as usize]
                        .table(|text| prepared.satisfies(text))
                });
                conditions.push(Condition::Attribute {
                    scope,
                    name,
                    table,
                    exclusive: prepared.exclusive(),
                });
            }
        }
        for (name, metric) in &dimensions.metrics {
            conditions.push(Condition::Metric {
                name: self.metric_names.find(name),
                metric: *metric,
            });
        }
        conditions
    }
}

/// A compiled segment bound to one index.
struct Plan {
    root: RulePlan,
    /// By slot of [`CompiledSegment::references`].
    references: Vec<RulePlan>,
}

enum RulePlan {
    /// All conditions hold.
    Dimensions(Vec<Condition>),
    Groups {
        include: Combination,
        groups: Vec<GroupPlan>,
    },
    /// Rows listing this import job id; `None` when no row does.
    Imported(Option<u32>),
}

struct GroupPlan {
    dimensions: Vec<Vec<Condition>>,
    dimension_type: Combination,
    /// Slots of the source segments (`None` cannot happen: compilation resolved them all).
    sources: Vec<Option<usize>>,
    source_type: SourceCombination,
    exclude_sources: bool,
}

/// One condition of a dimension set.
enum Condition {
    Recency {
        recency: Recency,
        now_second: i64,
    },
    /// Outcome by channel code.
    Channel([bool; CHANNELS.len()]),
    /// Outcome by dictionary id of the field.
    Text {
        field: TextField,
        table: Vec<bool>,
    },
    Gps(GpsPoint),
    Attribute {
        scope: usize,
        /// `None` when no endpoint has the attribute.
        name: Option<u32>,
        /// Whether each value id of the name satisfies the operator.
        table: Vec<bool>,
        exclusive: bool,
    },
    Metric {
        /// `None` when no endpoint has the metric.
        name: Option<u32>,
        metric: MetricDimension,
    },
}

/// Evaluation of a plan over a range of 64-row words.
struct Evaluation<'a> {
    index: &'a SegmentIndex,
    plan: &'a Plan,
    words: Range<usize>,
    /// Member bitsets of referenced segments, by slot, once computed.
    references: Vec<Option<Vec<u64>>>,
}

impl<'a> Evaluation<'a> {
    fn new(index: &'a SegmentIndex, plan: &'a Plan, words: Range<usize>) -> Self {
        Self {
            index,
            plan,
            words,
            references: plan.references.iter().map(|_| None).collect(),
        }
    }

    fn run(mut self) -> Vec<u64> {
        let plan = self.plan;
        let mut bits = self.rule(&plan.root);
        and(&mut bits, &self.index.live[self.words.clone()]);
        bits
    }

    fn ones(&self) -> Vec<u64> {
        vec![u64::MAX; self.words.len()]
    }

    fn zeros(&self) -> Vec<u64> {
        vec![0; self.words.len()]
    }

    fn rule(&mut self, rule: &RulePlan) -> Vec<u64> {
        match rule {
            RulePlan::Dimensions(conditions) => self.all_of(conditions),
            RulePlan::Groups { include, groups } => {
                let mut outcomes = Vec::with_capacity(groups.len());
                for group in groups {
                    outcomes.push(self.group(group));
                }
                self.combine(*include, outcomes)
            }
            RulePlan::Imported(None) => self.zeros(),
            RulePlan::Imported(Some(job)) => {
                let imported = &self.index.imported;
                self.fill(|row| imported.row(row).contains(job))
            }
        }
    }

    fn group(&mut self, group: &GroupPlan) -> Vec<u64> {
        let outcomes = group
            .dimensions
            .iter()
            .map(|conditions| self.all_of(conditions))
            .collect();
        let mut bits = self.combine(group.dimension_type, outcomes);
        if group.sources.is_empty() {
            return bits;
        }
        let mut sources = match group.source_type {
            SourceCombination::All => self.ones(),
            SourceCombination::Any => self.zeros(),
        };
        for slot in &group.sources {
            let members = match slot {
                Some(slot) => self.reference(*slot),
                None => self.zeros(),
            };
            match group.source_type {
                SourceCombination::All => and(&mut sources, &members),
                SourceCombination::Any => or(&mut sources, &members),
            }
            if let Some(slot) = slot {
                self.references[*slot] = Some(members);
            }
        }
        if group.exclude_sources {
            not(&mut sources);
        }
        and(&mut bits, &sources);
        bits
    }

    /// Members of a referenced segment, taken out of the memo (the caller puts them back).
    fn reference(&mut self, slot: usize) -> Vec<u64> {
        match self.references[slot].take() {
            Some(members) => members,
            None => {
                let plan = self.plan;
                self.rule(&plan.references[slot])
            }
        }
    }

    /// Combines outcomes as [`Combination::combine`] does, bit by bit.
    fn combine(&self, combination: Combination, outcomes: Vec<Vec<u64>>) -> Vec<u64> {
        if outcomes.is_empty() {
            return self.ones();
        }
        let mut bits = match combination {
            Combination::All => self.ones(),
            Combination::Any | Combination::None => self.zeros(),
        };
        for outcome in &outcomes {
            match combination {
                Combination::All => and(&mut bits, outcome),
                Combination::Any | Combination::None => or(&mut bits, outcome),
            }
        }
        if combination == Combination::None {
            not(&mut bits);
        }
        bits
    }

    fn all_of(&self, conditions: &[Condition]) -> Vec<u64> {
        let mut bits = self.ones();
        for condition in conditions {
            and(&mut bits, &self.condition(condition));
        }
        bits
    }

    fn condition(&self, condition: &Condition) -> Vec<u64> {
        let index = self.index;
        match condition {
            Condition::Recency {
                recency,
                now_second,
            } => self.fill(|row| {
                let seen = index.last_seen[row];
                recency.matches_second((seen != NEVER_SEEN).then_some(seen), *now_second)
            }),
            Condition::Channel(table) => self.fill(|row| table[index.channels[row] as usize]),
            Condition::Text { field, table } => {
                let ids = &index.texts[*field as usize].ids;
                self.fill(|row| table[ids[row] as usize])
            }
            Condition::Gps(point) => self.fill(|row| {
                let latitude = index.latitudes[row];
                !point.surely_outside(latitude) && point.contains(latitude, index.longitudes[row])
            }),
            Condition::Attribute {
                scope,
                name,
                table,
                exclusive,
            } => {
                let Some(name) = *name else {
                    // Nobody has the attribute: as for an endpoint without it.
                    return if *exclusive {
                        self.ones()
                    } else {
                        self.zeros()
                    };
                };
                let arena = &index.attributes[*scope];
                self.fill(|row| {
                    let satisfied = arena
                        .row(row)
                        .iter()
                        .any(|entry| entry.name == name && table[entry.value as usize]);
                    satisfied != *exclusive
                })
            }
            Condition::Metric { name, metric } => {
                let Some(name) = *name else {
                    return if metric.matches(None) {
                        self.ones()
                    } else {
                        self.zeros()
                    };
                };
                self.fill(|row| {
                    let value = index
                        .metrics
                        .row(row)
                        .iter()
                        .find(|entry| entry.name == name)
                        .map(|entry| entry.value);
                    metric.matches(value)
                })
            }
        }
    }

    /// A bitset of `test` over the rows of the range.
    fn fill(&self, test: impl Fn(usize) -> bool) -> Vec<u64> {
        let rows = self.index.keys.len();
        let mut bits = self.zeros();
        for (offset, word) in bits.iter_mut().enumerate() {
            let first = (self.words.start + offset) * 64;
            let end = (first + 64).min(rows);
            let mut value = 0;
            for row in first..end {
                value |= u64::from(test(row)) << (row - first);
            }
            *word = value;
        }
        bits
    }
}

fn and(bits: &mut [u64], other: &[u64]) {
    for (bit, other) in bits.iter_mut().zip(other) {
        *bit &= other;
    }
}

fn or(bits: &mut [u64], other: &[u64]) {
    for (bit, other) in bits.iter_mut().zip(other) {
        *bit |= other;
    }
}

fn not(bits: &mut [u64]) {
    for bit in bits {
        *bit = !*bit;
    }
}

/// Positions of the set bits of `word`, lowest first.
fn set_bits(mut word: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if word == 0 {
            return None;
        }
        let bit = word.trailing_zeros() as usize;
        word &= word - 1;
        Some(bit)
    })
}

fn to_u32(value: usize) -> u32 {
    u32::try_from(value).expect("segment index positions fit in 32 bits")
}

fn vec_bytes<T>(items: &Vec<T>) -> usize {
    items.capacity() * size_of::<T>()
}

/// Bytes of a hash table: its buckets (capacity at 7/8 load, a power of two), each holding
/// an entry and a control byte.
fn map_bytes<K, V>(map: &HashMap<K, V>) -> usize {
    if map.capacity() == 0 {
        return 0;
    }
    let buckets = (map.capacity() * 8 / 7).next_power_of_two();
    buckets * (size_of::<(K, V)>() + 1)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;
    use proptest::sample::select;

    use super::*;
    use crate::domain::segment::{
        AttributeDimension, AttributeKind, MetricComparison, RecencyDuration, RecencyKind,
        SegmentDemographics, SegmentGroup, SegmentGroupList, SegmentLocation, WireName, matches,
        parse_instant,
    };

    fn now() -> DateTime<Utc> {
        parse_instant("2026-11-25T12:00:00Z").expect("valid")
    }

    fn text(options: &'static [&'static str]) -> impl Strategy<Value = String> + Clone {
        select(options).prop_map(str::to_string)
    }

    const CHANNEL_NAMES: &[&str] = &["EMAIL", "sms", "FCM", "GCM", "APNS", "in_app", "bogus"];
    const APP_VERSIONS: &[&str] = &["1.0", "1.1", "2.0", ""];
    const DEVICES: &[&str] = &["iPhone", "iphone", "Pixel 8", "Galaxy", ""];
    const MAKES: &[&str] = &["Apple", "apple", "Google", "ÜBER", "über", ""];
    const PLATFORMS: &[&str] = &["ios", "IOS", "android", "web", ""];
    const COUNTRIES: &[&str] = &["BR", "br", "US", "IN", ""];
    const ATTRIBUTE_NAMES: &[&str] = &["plan", "tier", "signup"];
    const USER_ATTRIBUTE_NAMES: &[&str] = &["first_name", "plan"];
    const ATTRIBUTE_VALUES: &[&str] = &[
        "gold",
        "Gold",
        "silver",
        "gold-plus",
        "2026-01-05",
        "2026-01-05T10:00:00Z",
        "2026-01-04T23:00:00-03:00",
        "2025-12-31",
        "x",
    ];
    const DIMENSION_VALUES: &[&str] = &[
        "GOLD",
        "silver",
        "ld",
        "2026-01-05",
        "2026-01-05T10:00:00Z",
        "2026-01-01",
        "2026-02-01",
        "x",
    ];
    const METRIC_NAMES: &[&str] = &["score", "visits"];
    /// Import jobs whose imported segments endpoints may be in; `j9` never holds anyone.
    const IMPORT_JOBS: &[&str] = &["j0", "j1", "j2"];
    const METRIC_VALUES: &[f64] = &[-1.0, -0.0, 0.0, 1.0, 2.5, 10.0];
    /// Seconds before `now`, at the edges of every recency window.
    const AGES: &[i64] = &[
        -5, 0, 1, 86_399, 86_400, 86_401, 604_800, 604_801, 1_209_600, 2_592_000, 2_592_001,
        40_000_000,
    ];
    const POINTS: &[(f64, f64)] = &[
        (-23.5505, -46.6333),
        (-22.9068, -43.1729),
        (-23.6, -46.7),
        (40.7128, -74.006),
        (-90.0, 0.0),
        (0.0, 180.0),
    ];
    const RANGES_KM: &[f64] = &[0.5, 10.0, 100.0, 360.0, 20_000.0];

    fn values_map(
        names: &'static [&'static str],
    ) -> impl Strategy<Value = BTreeMap<String, Vec<String>>> {
        prop::collection::btree_map(
            text(names),
            prop::collection::vec(text(ATTRIBUTE_VALUES), 0..3),
            0..3,
        )
    }

    /// Endpoints drawn from small vocabularies, so segments often hit them, with values
    /// differing only in case, last-seen times at window edges (plus a fraction of a
    /// second), and coordinates that are missing, half missing, or at the poles.
    fn facts() -> impl Strategy<Value = EndpointFacts> {
        let coordinates = prop_oneof![
            Just((None, None)),
            Just((Some(-23.5), None)),
            select(POINTS).prop_map(|(lat, lon)| (Some(lat), Some(lon))),
        ];
        let last_seen = prop::option::of((select(AGES), 0..1_000_000_000i64)).prop_map(|seen| {
            seen.map(|(age, nanos)| {
                now() - chrono::Duration::seconds(age) + chrono::Duration::nanoseconds(nanos)
            })
        });
        let metrics = prop::collection::btree_map(text(METRIC_NAMES), select(METRIC_VALUES), 0..3);
        (
            (
                select(&CHANNELS[..]),
                text(APP_VERSIONS),
                text(DEVICES),
                text(MAKES),
                text(DEVICES),
                text(PLATFORMS),
                text(COUNTRIES),
            ),
            coordinates,
            values_map(ATTRIBUTE_NAMES),
            metrics,
            values_map(USER_ATTRIBUTE_NAMES),
            last_seen,
            prop::collection::btree_set(text(IMPORT_JOBS), 0..3),
        )
            .prop_map(
                |(
                    (channel, app_version, device_type, make, model, platform, country),
                    (latitude, longitude),
                    attributes,
                    metrics,
                    user_attributes,
                    last_seen,
                    imported_by,
                )| EndpointFacts {
                    channel,
                    app_version,
                    device_type,
                    make,
                    model,
                    platform,
                    country,
                    latitude,
                    longitude,
                    attributes,
                    metrics,
                    user_attributes,
                    last_seen,
                    imported_by,
                },
            )
    }

    fn set_dimension(values: &'static [&'static str]) -> impl Strategy<Value = SetDimension> {
        (
            select(SetKind::ALL),
            prop::collection::vec(text(values), 1..3),
        )
            .prop_map(|(kind, values)| SetDimension { kind, values })
    }

    fn sometimes<S: Strategy>(strategy: S) -> impl Strategy<Value = Option<S::Value>> {
        prop::option::weighted(0.25, strategy)
    }

    fn attribute_dimensions(
        names: &'static [&'static str],
    ) -> impl Strategy<Value = BTreeMap<String, AttributeDimension>> {
        let attribute = (
            select(AttributeKind::ALL),
            prop::collection::vec(text(DIMENSION_VALUES), 1..3),
        )
            .prop_map(|(kind, values)| AttributeDimension { kind, values });
        prop::collection::btree_map(text(names), attribute, 0..2)
    }

    /// Dimension sets using every kind of dimension, each present a quarter of the time.
    fn dimensions() -> impl Strategy<Value = SegmentDimensions> {
        let recency = (select(RecencyDuration::ALL), select(RecencyKind::ALL))
            .prop_map(|(duration, kind)| Recency { duration, kind });
        let demographic = (
            sometimes(set_dimension(APP_VERSIONS)),
            sometimes(set_dimension(CHANNEL_NAMES)),
            sometimes(set_dimension(DEVICES)),
            sometimes(set_dimension(MAKES)),
            sometimes(set_dimension(DEVICES)),
            sometimes(set_dimension(PLATFORMS)),
        )
            .prop_map(
                |(app_version, channel, device_type, make, model, platform)| SegmentDemographics {
                    app_version,
                    channel,
                    device_type,
                    make,
                    model,
                    platform,
                },
            );
        let gps =
            (select(POINTS), select(RANGES_KM)).prop_map(|((latitude, longitude), range_km)| {
                GpsPoint {
                    latitude,
                    longitude,
                    range_km,
                }
            });
        let location = (sometimes(set_dimension(COUNTRIES)), sometimes(gps))
            .prop_map(|(country, gps_point)| SegmentLocation { country, gps_point });
        let metric = (
            select(MetricComparison::ALL),
            select(METRIC_VALUES),
            prop::option::of(select(METRIC_VALUES)),
        )
            .prop_map(|(comparison, value, upper)| MetricDimension {
                comparison,
                value,
                upper,
            });
        (
            sometimes(recency),
            demographic,
            location,
            attribute_dimensions(ATTRIBUTE_NAMES),
            prop::collection::btree_map(text(METRIC_NAMES), metric, 0..2),
            attribute_dimensions(USER_ATTRIBUTE_NAMES),
        )
            .prop_map(
                |(recency, demographic, location, attributes, metrics, user_attributes)| {
                    SegmentDimensions {
                        recency,
                        demographic,
                        location,
                        attributes,
                        metrics,
                        user_attributes,
                    }
                },
            )
    }

    /// Rules that may refer to library segments `s0` … `s{referable - 1}`.
    fn rule(referable: usize) -> impl Strategy<Value = SegmentRule> {
        let group = (
            prop::collection::vec(dimensions(), 0..3),
            select(Combination::ALL),
            prop::collection::vec(0..3usize, 0..3),
            select(SourceCombination::ALL),
            select(SetKind::ALL),
        )
            .prop_map(
                move |(dimensions, dimension_type, sources, source_type, segment_type)| {
                    SegmentGroup {
                        dimensions,
                        dimension_type,
                        source_segments: sources
                            .into_iter()
                            .filter(|&source| source < referable)
                            .map(|source| SegmentReference {
                                id: format!("s{source}"),
                                version: None,
                            })
                            .collect(),
                        source_type,
                        segment_type,
                    }
                },
            );
        let imported = prop_oneof![text(IMPORT_JOBS), Just("j9".to_string())]
            .prop_map(|import_job_id| SegmentRule::Imported { import_job_id });
        prop_oneof![
            dimensions().prop_map(SegmentRule::Dimensions),
            imported,
            (select(Combination::ALL), prop::collection::vec(group, 0..3)).prop_map(
                |(include, groups)| SegmentRule::Groups(SegmentGroupList { include, groups })
            ),
        ]
    }

    fn definition(rule: SegmentRule) -> SegmentDefinition {
        SegmentDefinition {
            name: "segment".to_string(),
            rule,
        }
    }

    /// Three stored segments, each referring only to earlier ones, so none loops.
    fn library() -> impl Strategy<Value = Vec<SegmentDefinition>> {
        (rule(0), rule(1), rule(2))
            .prop_map(|(s0, s1, s2)| vec![definition(s0), definition(s1), definition(s2)])
    }

    #[derive(Debug, Clone)]
    enum Change {
        Upsert(usize, Box<EndpointFacts>),
        /// An endpoint write as a shard applies it: imported segments stay.
        Rewrite(usize, Box<EndpointFacts>),
        Import(usize, String),
        Remove(usize),
    }

    const KEYS: usize = 150;

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            3 => (0..KEYS, facts()).prop_map(|(key, facts)| Change::Upsert(key, Box::new(facts))),
            1 => (0..KEYS, facts()).prop_map(|(key, facts)| Change::Rewrite(key, Box::new(facts))),
            1 => (0..KEYS, text(IMPORT_JOBS)).prop_map(|(key, job)| Change::Import(key, job)),
            1 => (0..KEYS).prop_map(Change::Remove),
        ]
    }

    /// An index that splits even a few rows over three threads and compacts its arenas
    /// early, so those paths run in small tests.
    fn eager_index() -> SegmentIndex {
        SegmentIndex::with_tuning(Tuning {
            threads: 3,
            min_words_per_thread: 1,
            compact_after: 4,
        })
    }

    /// Every dictionary use is accounted for by a live row, so ids are freed after their
    /// last use and nothing leaks as endpoints change.
    fn uses_match_rows(index: &SegmentIndex) -> std::result::Result<(), TestCaseError> {
        let uses = |dictionary: &Dictionary| -> u64 {
            dictionary
                .entries
                .iter()
                .map(|entry| u64::from(entry.uses))
                .sum()
        };
        let live_rows: Vec<usize> = index.rows.values().map(|&row| row as usize).collect();
        for column in &index.texts {
            prop_assert_eq!(uses(&column.dictionary), live_rows.len() as u64);
        }
        for scope in [ENDPOINT_SCOPE, USER_SCOPE] {
            let entries: u64 = live_rows
                .iter()
                .map(|&row| index.attributes[scope].row(row).len() as u64)
                .sum();
            prop_assert_eq!(uses(&index.attribute_names[scope]), entries);
            let values: u64 = index.attribute_values[scope].iter().map(uses).sum();
            prop_assert_eq!(values, entries);
        }
        let metrics: u64 = live_rows
            .iter()
            .map(|&row| index.metrics.row(row).len() as u64)
            .sum();
        prop_assert_eq!(uses(&index.metric_names), metrics);
        let imported: u64 = live_rows
            .iter()
            .map(|&row| index.imported.row(row).len() as u64)
            .sum();
        prop_assert_eq!(uses(&index.import_jobs), imported);
        Ok(())
    }

    /// The index's members and count of `segment` are exactly the endpoints of `model`
    /// that the plain evaluator selects.
    fn agrees_with_oracle(
        index: &SegmentIndex,
        model: &BTreeMap<String, EndpointFacts>,
        segment: &SegmentDefinition,
        library: &[SegmentDefinition],
    ) -> std::result::Result<(), TestCaseError> {
        let resolver = |id: &str, _version: Option<u32>| {
            let position: usize = id.strip_prefix('s')?.parse().ok()?;
            library.get(position)
        };
        let compiled = CompiledSegment::compile(segment, &resolver).expect("no loops, 3 deep");
        let mut expected = BTreeSet::new();
        for (key, facts) in model {
            if matches(segment, facts, now(), &resolver).expect("no loops, 3 deep") {
                expected.insert(key.as_str());
            }
        }
        let members: Vec<&str> = index.members(&compiled, now()).collect();
        let member_set: BTreeSet<&str> = members.iter().copied().collect();
        prop_assert_eq!(members.len(), member_set.len(), "a member listed twice");
        prop_assert_eq!(&member_set, &expected);
        prop_assert_eq!(index.count(&compiled, now()), expected.len() as u64);
        prop_assert_eq!(index.len(), model.len());
        uses_match_rows(index)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// For random endpoints and random segments (every dimension kind, imported
        /// segments, groups with ALL/ANY/NONE, included and excluded source segments), the
        /// index selects exactly the endpoints the plain evaluator selects, before, during
        /// and after a stream of upserts, rewrites that keep imported segments, imports and
        /// removals, split over threads or not.
        #[test]
        fn index_agrees_with_the_plain_evaluator(
            library in library(),
            segment in rule(3),
            changes in prop::collection::vec(change(), 1..300),
            eager in any::<bool>(),
        ) {
            let segment = definition(segment);
            let mut index = if eager { eager_index() } else { SegmentIndex::new() };
            let mut model = BTreeMap::new();
            for (step, change) in changes.into_iter().enumerate() {
                match change {
                    Change::Upsert(key, facts) => {
                        index.upsert(&format!("e{key}"), &facts);
                        model.insert(format!("e{key}"), *facts);
                    }
                    Change::Rewrite(key, mut facts) => {
                        let key = format!("e{key}");
                        index.upsert_keeping_imports(&key, &facts);
                        facts.imported_by = model
                            .get(&key)
                            .map(|known| known.imported_by.clone())
                            .unwrap_or_default();
                        model.insert(key, *facts);
                    }
                    Change::Import(key, job) => {
                        let key = format!("e{key}");
                        let known = model.get_mut(&key);
                        prop_assert_eq!(index.add_imported(&key, &job), known.is_some());
                        if let Some(known) = known {
                            known.imported_by.insert(job);
                        }
                    }
                    Change::Remove(key) => {
                        let key = format!("e{key}");
                        prop_assert_eq!(index.remove(&key), model.remove(&key).is_some());
                    }
                }
                if step % 60 == 0 {
                    agrees_with_oracle(&index, &model, &segment, &library)?;
                }
            }
            agrees_with_oracle(&index, &model, &segment, &library)?;
            agrees_with_oracle(&index, &model, &library[2], &library)?;
        }
    }

    fn churn_facts(round: usize) -> EndpointFacts {
        EndpointFacts {
            channel: ChannelType::Sms,
            app_version: format!("build-{round}"),
            device_type: String::new(),
            make: String::new(),
            model: String::new(),
            platform: "android".to_string(),
            country: "BR".to_string(),
            latitude: None,
            longitude: None,
            attributes: BTreeMap::from([(
                "order".to_string(),
                (0..round % 5)
                    .map(|i| format!("order-{round}-{i}"))
                    .collect(),
            )]),
            metrics: BTreeMap::from([(format!("m{round}"), 1.0)]),
            user_attributes: BTreeMap::new(),
            last_seen: None,
            imported_by: BTreeSet::from([format!("job-{}", round % 3)]),
        }
    }

    /// A long-running shard whose endpoints keep changing values does not grow: freed
    /// rows, dictionary ids and arena space are reused.
    #[test]
    fn churn_does_not_grow_the_index() {
        let mut index = eager_index();
        for round in 0..50 {
            for key in 0..20 {
                index.upsert(&format!("e{key}"), &churn_facts(round * 20 + key));
            }
        }
        let settled = index.memory_bytes();
        for round in 50..500 {
            for key in 0..20 {
                let key_name = format!("e{key}");
                if (round + key) % 7 == 0 {
                    assert!(index.remove(&key_name));
                }
                index.upsert(&key_name, &churn_facts(round * 20 + key));
            }
        }
        assert_eq!(index.len(), 20);
        assert_eq!(index.keys.len(), 20);
        assert!(
            index.texts[TextField::AppVersion as usize]
                .dictionary
                .entries
                .len()
                <= 40
        );
        assert!(index.metric_names.entries.len() <= 40);
        assert!(index.attributes[ENDPOINT_SCOPE].items.len() <= 2 * 20 * 4 + 8);
        assert!(
            index.memory_bytes() <= settled * 2,
            "{} > 2 × {settled}",
            index.memory_bytes()
        );
        let everyone = CompiledSegment::compile(
            &definition(SegmentRule::Dimensions(SegmentDimensions::default())),
            &crate::domain::segment::NoSegments,
        )
        .expect("no references");
        assert_eq!(index.count(&everyone, now()), 20);
        assert!(!index.remove("unknown"));
        assert!(!index.contains("unknown"));
        assert!(index.contains("e3"));
    }

    /// One of a million-like population: a phone in Brazil or India with a plan, two
    /// interests, two metrics, a first name and a last-seen time within two months.
    fn synthetic(i: usize) -> EndpointFacts {
        let pick = |options: &[&str], salt: usize| {
            options[(i / (salt + 1)).wrapping_mul(2_654_435_761) % options.len()].to_string()
        };
        let interests = ["football", "music", "travel", "cooking", "games", "films"];
        EndpointFacts {
            channel: [
                ChannelType::Gcm,
                ChannelType::Apns,
                ChannelType::Email,
                ChannelType::Sms,
            ][i % 4],
            app_version: format!("{}.{}.{}", i % 3 + 1, i % 10, i % 4),
            device_type: pick(&["Pixel 8", "iPhone 15", "Galaxy S24", "Moto G"], 1),
            make: pick(&["Google", "Apple", "Samsung", "Motorola"], 1),
            model: pick(&["Pixel 8", "iPhone 15", "Galaxy S24", "Moto G"], 1),
            platform: pick(&["android", "ios"], 2),
            country: pick(&["BR", "IN", "US", "PT", "MX"], 3),
            latitude: Some(-33.0 + (i % 2_000) as f64 * 0.01),
            longitude: Some(-70.0 + (i % 3_000) as f64 * 0.01),
            attributes: BTreeMap::from([
                (
                    "plan".to_string(),
                    vec![pick(&["free", "silver", "gold"], 4)],
                ),
                (
                    "interests".to_string(),
                    vec![pick(&interests, 5), pick(&interests, 6)],
                ),
            ]),
            metrics: BTreeMap::from([
                ("sessions".to_string(), (i % 50) as f64),
                ("spend".to_string(), (i % 977) as f64 * 1.5),
            ]),
            user_attributes: BTreeMap::from([(
                "first_name".to_string(),
                vec![format!("name-{}", i % 500)],
            )]),
            last_seen: Some(now() - chrono::Duration::seconds((i % 5_184_000) as i64)),
            imported_by: BTreeSet::new(),
        }
    }

    /// At scale the index stays within the benchmark's budget of 300 bytes per endpoint
    /// beyond its strings, and a four-dimension segment still counts what the plain
    /// evaluator counts.
    #[test]
    fn two_hundred_thousand_endpoints_fit_the_memory_budget() {
        const ENDPOINTS: usize = 200_000;
        let mut index = SegmentIndex::new();
        let mut population = Vec::with_capacity(ENDPOINTS);
        for i in 0..ENDPOINTS {
            let facts = synthetic(i);
            index.upsert(&format!("endpoint-{i:08}"), &facts);
            population.push(facts);
        }
        assert_eq!(index.len(), ENDPOINTS);
        let memory = index.memory();
        let per_endpoint = memory.index_bytes / index.len();
        assert!(
            per_endpoint <= 300,
            "{per_endpoint} bytes per endpoint: {memory:?}"
        );

        let segment = definition(SegmentRule::Dimensions(SegmentDimensions {
            recency: Some(Recency {
                duration: RecencyDuration::Day30,
                kind: RecencyKind::Active,
            }),
            demographic: SegmentDemographics {
                platform: Some(SetDimension {
                    kind: SetKind::Inclusive,
                    values: vec!["Android".to_string()],
                }),
                ..Default::default()
            },
            location: SegmentLocation {
                country: Some(SetDimension {
                    kind: SetKind::Exclusive,
                    values: vec!["us".to_string()],
                }),
                gps_point: None,
            },
            attributes: BTreeMap::from([(
                "plan".to_string(),
                AttributeDimension {
                    kind: AttributeKind::Inclusive,
                    values: vec!["gold".to_string(), "silver".to_string()],
                },
            )]),
            ..Default::default()
        }));
        let compiled = CompiledSegment::compile(&segment, &crate::domain::segment::NoSegments)
            .expect("no references");
        let expected = population
            .iter()
            .filter(|facts| {
                matches(&segment, facts, now(), &crate::domain::segment::NoSegments)
                    .expect("no references")
            })
            .count();
        assert!(expected > 0 && expected < ENDPOINTS, "{expected}");
        assert_eq!(index.count(&compiled, now()), expected as u64);
    }
}
