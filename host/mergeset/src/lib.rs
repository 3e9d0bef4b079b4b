//! mergeset: an LSM of sorted byte items with no values (FORMATS.md §3), the structure under
//! indexdb.
//!
//! Items are added in any order to a pending buffer, become sorted in-memory parts (searchable),
//! then file parts (durable), which background merges combine. A part directory holds
//! `items.bin`, `lens.bin`, `index.bin`, `metaindex.bin` and `metadata.json`; the table's
//! `parts.json` lists the parts that exist. Searches ([`TableSearch`]) walk all parts in byte
//! order with seeks and prefix scans. Merges pass each output block through an optional
//! [`PrepareBlock`] hook, through which indexdb packs rows.
//!
//! Invariants: a part is immutable once listed; a directory not listed in `parts.json` is
//! garbage from a crash; damaged data is an [`Error::Corrupt`] naming the part, never a panic.

mod encoding;
mod error;
mod items;
mod part;
mod search;
mod select;
mod table;

pub use encoding::{get_uvarint, put_uvarint};
pub use error::{Error, Result};
pub use items::Items;
pub use part::{INDEX_FILE, ITEMS_FILE, LENS_FILE, METADATA_FILE, METAINDEX_FILE, Metadata};
pub use search::TableSearch;
pub use select::select_parts_to_merge;
pub use table::{MAX_ITEM_SIZE, PARTS_FILE, PrepareBlock, Table, TableOptions, TableStats};
