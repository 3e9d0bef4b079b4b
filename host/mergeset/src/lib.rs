//! mergeset: an LSM of sorted byte items with no values (FORMATS.md §3), the structure under
//! indexdb. Being filled by the index issue.
