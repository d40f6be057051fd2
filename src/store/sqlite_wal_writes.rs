//! Fewer write calls for a commit: a SQLite VFS that passes every call to
//! the platform's own VFS (`unix`) and changes one thing, how the frames
//! of a WAL commit reach the WAL file.
//!
//! SQLite writes each frame of a commit with two `pwrite`s (its 24-byte
//! header, then the page), so a batch of registrations that changes 24
//! pages costs 48 system calls on the store's thread, each paying the file
//! system's fixed cost (most of the store thread's kernel time under load).
//! Here the frames a commit writes before its last one are gathered in
//! memory while they arrive in order, and written with one call when the
//! commit frame's header arrives (the commit frame's page follows in a
//! second call): two calls per commit. Nothing else changes: the bytes,
//! their offsets and their order in the file are SQLite's own.
//!
//! What keeps this safe, in SQLite 3.46's WAL writer (`walFrames`):
//! - only the header of a frame that is not a commit frame (24 bytes, the
//!   database size field zero) and the page that directly follows it are
//!   held back. The commit frame's header joins them and all of it is
//!   written at once; every other write (the commit frame's page, the WAL
//!   header, a frame rewritten in place, checksums rewritten) first writes
//!   what is held, then goes straight to the file, so the file sees every
//!   write in SQLite's order;
//! - the commit frame's header is the last write of a commit before SQLite
//!   publishes the commit in the WAL index (the shared memory other
//!   connections read). It is written, with everything held before it,
//!   before that write returns, so a reader in another process, the sync
//!   thread's `fdatasync` (`sqlite_sync.rs`, on its own descriptor) and a
//!   `kill -9` all find the whole commit in the file;
//! - frames of a transaction that never commits are held until the next
//!   call of any kind on the file; SQLite's recovery ignores them as it
//!   would have in the file;
//! - any other call on the WAL file (read, sync, size, truncate, locks,
//!   close) writes what is held first, and a failed write is returned to
//!   SQLite from the call that made it, as SQLite's own write error;
//! - at most [`HOLD_AT_MOST`] bytes are held, written in calls of at most
//!   [`WRITE_AT_MOST`].
//!
//! The database file, the shared memory and every other call go to the
//! platform VFS unchanged. This module owns the VFS's registration
//! ([`name`]) and the wrapped files.
//!
//! Why the `unsafe` holds: SQLite allocates `szOsFile` bytes (8-aligned)
//! for each file it opens with this VFS and passes that pointer to every
//! method; a [`File`] starts there and the platform's file starts
//! [`REAL_AT`] bytes in, inside the same allocation. `open` initializes
//! every field before it sets the methods, and SQLite calls the methods
//! only on a file whose methods are set, until `close`, which drops what
//! `open` made. A file belongs to one connection, whose calls come from
//! one thread at a time (the store's connection is used by its thread
//! alone), so `&mut File` is never aliased.

#![allow(unsafe_code)]

use rusqlite::ffi;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

/// What the store's connection opens with.
const NAME: &CStr = c"rg-wal-writes";

/// The size of a WAL frame header (SQLite's `WAL_FRAME_HDRSIZE`).
const FRAME_HEADER: usize = 24;

/// Held bytes are written once there are this many (a transaction large
/// enough to spill pages before its commit).
const HOLD_AT_MOST: usize = 256 << 10;

/// The most one write call passes to the platform VFS (its `unix` VFS
/// writes at most 128 KiB − 1 bytes per call).
const WRITE_AT_MOST: usize = 64 << 10;

/// Registers the VFS (once per process) and returns its name, for
/// [`rusqlite::Connection::open_with_flags_and_vfs`]; `None` if SQLite has
/// no default VFS to wrap.
pub(super) fn name() -> Option<&'static str> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| unsafe { register() });
    ok.then(|| NAME.to_str().expect("the VFS name is ASCII"))
}

/// Our files, then the platform VFS's file, in the space SQLite allocates
/// for each open file (`szOsFile`).
#[repr(C)]
struct File {
    /// First, so SQLite's `sqlite3_file*` is a `File*`.
    base: ffi::sqlite3_file,
    /// The platform VFS's file, [`REAL_AT`] bytes after `base`.
    real: *mut ffi::sqlite3_file,
    /// A WAL file: its frame writes are gathered.
    wal: bool,
    held: Held,
}

/// Writes held back, contiguous from `at`.
struct Held {
    bytes: Vec<u8>,
    at: i64,
    /// The last held write was a frame header: its page comes next.
    page_next: bool,
}

/// Where the platform's file starts in ours (16-byte aligned).
const REAL_AT: usize = std::mem::size_of::<File>().div_ceil(16) * 16;

/// The platform VFS, kept with ours (`pAppData`).
unsafe fn real_vfs(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    (*vfs).pAppData as *mut ffi::sqlite3_vfs
}

unsafe fn register() -> bool {
    let real = ffi::sqlite3_vfs_find(std::ptr::null());
    if real.is_null() {
        return false;
    }
    let Ok(size) = c_int::try_from(REAL_AT + (*real).szOsFile as usize) else {
        return false;
    };
    // A copy of the platform VFS: its other methods do not use the VFS
    // pointer they are given beyond `mxPathname`, which the copy keeps.
    let mut ours: ffi::sqlite3_vfs = std::ptr::read(real);
    ours.pNext = std::ptr::null_mut();
    ours.zName = NAME.as_ptr();
    ours.szOsFile = size;
    ours.pAppData = real as *mut c_void;
    ours.xOpen = Some(open);
    // SQLite keeps the pointer for the life of the process.
    let ours = Box::leak(Box::new(ours));
    ffi::sqlite3_vfs_register(ours, 0) == ffi::SQLITE_OK
}

/// Our methods, at the version of the platform file's (a method the
/// platform's version lacks is never called).
const fn methods(version: c_int) -> ffi::sqlite3_io_methods {
    ffi::sqlite3_io_methods {
        iVersion: version,
        xClose: Some(close),
        xRead: Some(read),
        xWrite: Some(write),
        xTruncate: Some(truncate),
        xSync: Some(sync),
        xFileSize: Some(file_size),
        xLock: Some(lock),
        xUnlock: Some(unlock),
        xCheckReservedLock: Some(check_reserved_lock),
        xFileControl: Some(file_control),
        xSectorSize: Some(sector_size),
        xDeviceCharacteristics: Some(device_characteristics),
        xShmMap: if version >= 2 { Some(shm_map) } else { None },
        xShmLock: if version >= 2 { Some(shm_lock) } else { None },
        xShmBarrier: if version >= 2 {
            Some(shm_barrier)
        } else {
            None
        },
        xShmUnmap: if version >= 2 { Some(shm_unmap) } else { None },
        xFetch: if version >= 3 { Some(fetch) } else { None },
        xUnfetch: if version >= 3 { Some(unfetch) } else { None },
    }
}

static METHODS: [ffi::sqlite3_io_methods; 3] = [methods(1), methods(2), methods(3)];

unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let me = file as *mut File;
    let real = (file as *mut u8).add(REAL_AT) as *mut ffi::sqlite3_file;
    (*me).base.pMethods = std::ptr::null();
    (*real).pMethods = std::ptr::null();
    let real_vfs = real_vfs(vfs);
    let Some(real_open) = (*real_vfs).xOpen else {
        return ffi::SQLITE_CANTOPEN;
    };
    let rc = real_open(real_vfs, name, real, flags, out_flags);
    if rc != ffi::SQLITE_OK {
        // SQLite calls `xClose` only on a file whose methods are set; ours
        // stay unset, so close the platform's file here if it has any.
        if let Some(close) = (*real).pMethods.as_ref().and_then(|m| m.xClose) {
            close(real);
        }
        return rc;
    }
    std::ptr::addr_of_mut!((*me).real).write(real);
    std::ptr::addr_of_mut!((*me).wal).write(flags & ffi::SQLITE_OPEN_WAL != 0);
    std::ptr::addr_of_mut!((*me).held).write(Held {
        bytes: Vec::new(),
        at: 0,
        page_next: false,
    });
    let version = (*(*real).pMethods).iVersion.clamp(1, 3);
    (*me).base.pMethods = &METHODS[version as usize - 1];
    ffi::SQLITE_OK
}

/// The platform's file and its methods.
unsafe fn real<'a>(
    file: *mut ffi::sqlite3_file,
) -> (*mut ffi::sqlite3_file, &'a ffi::sqlite3_io_methods) {
    let real = (*(file as *mut File)).real;
    (real, &*(*real).pMethods)
}

/// Writes what is held, if anything.
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    let me = &mut *(file as *mut File);
    if me.held.bytes.is_empty() {
        return ffi::SQLITE_OK;
    }
    let real = me.real;
    let Some(write) = (*(*real).pMethods).xWrite else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    let mut rc = ffi::SQLITE_OK;
    let mut at = me.held.at;
    for chunk in me.held.bytes.chunks(WRITE_AT_MOST) {
        #[cfg(test)]
        tests::WAL_WRITES.with(|n| n.set(n.get() + 1));
        // `chunk.len()` is at most `WRITE_AT_MOST`.
        rc = write(
            real,
            chunk.as_ptr() as *const c_void,
            chunk.len() as c_int,
            at,
        );
        if rc != ffi::SQLITE_OK {
            break;
        }
        at += chunk.len() as i64;
    }
    me.held.bytes.clear();
    me.held.page_next = false;
    rc
}

/// Forwards a call to the platform's file after writing what is held.
macro_rules! forward {
    ($file:ident, $method:ident, $missing:expr $(, $arg:expr)*) => {{
        let rc = flush($file);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        let (real, methods) = real($file);
        match methods.$method {
            Some(m) => m(real $(, $arg)*),
            None => $missing,
        }
    }};
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    let me = &mut *(file as *mut File);
    if me.wal && amount > 0 {
        let bytes = std::slice::from_raw_parts(data as *const u8, amount as usize);
        let held = &mut me.held;
        let next = held.bytes.is_empty() || offset == held.at + held.bytes.len() as i64;
        let header = bytes.len() == FRAME_HEADER;
        // A frame header's bytes 4..8: the database size after a commit,
        // zero in every other frame.
        let commit = header && bytes[4..8] != [0; 4];
        if next && (header != held.page_next) {
            if held.bytes.is_empty() {
                held.at = offset;
            }
            held.bytes.extend_from_slice(bytes);
            held.page_next = header;
            if commit {
                // The commit frame's header: everything before it is
                // written now, with it.
                return flush(file);
            }
            if !header && held.bytes.len() >= HOLD_AT_MOST {
                return flush(file);
            }
            return ffi::SQLITE_OK;
        }
    }
    #[cfg(test)]
    if me.wal {
        tests::WAL_WRITES.with(|n| n.set(n.get() + 1));
    }
    forward!(file, xWrite, ffi::SQLITE_IOERR_WRITE, data, amount, offset)
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    let flushed = flush(file);
    let (real, methods) = real(file);
    let closed = methods.xClose.map_or(ffi::SQLITE_OK, |m| m(real));
    std::ptr::drop_in_place(std::ptr::addr_of_mut!((*(file as *mut File)).held));
    (*file).pMethods = std::ptr::null();
    if flushed != ffi::SQLITE_OK {
        flushed
    } else {
        closed
    }
}

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    data: *mut c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    forward!(file, xRead, ffi::SQLITE_IOERR_READ, data, amount, offset)
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    forward!(file, xTruncate, ffi::SQLITE_IOERR_TRUNCATE, size)
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    forward!(file, xSync, ffi::SQLITE_IOERR_FSYNC, flags)
}

unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    forward!(file, xFileSize, ffi::SQLITE_IOERR_FSTAT, size)
}

unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    forward!(file, xLock, ffi::SQLITE_IOERR_LOCK, level)
}

unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    forward!(file, xUnlock, ffi::SQLITE_IOERR_UNLOCK, level)
}

unsafe extern "C" fn check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    forward!(
        file,
        xCheckReservedLock,
        ffi::SQLITE_IOERR_CHECKRESERVEDLOCK,
        out
    )
}

unsafe extern "C" fn file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    forward!(file, xFileControl, ffi::SQLITE_NOTFOUND, op, arg)
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    let (real, methods) = real(file);
    methods.xSectorSize.map_or(4096, |m| m(real))
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    let (real, methods) = real(file);
    methods.xDeviceCharacteristics.map_or(0, |m| m(real))
}

unsafe extern "C" fn shm_map(
    file: *mut ffi::sqlite3_file,
    region: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    forward!(
        file,
        xShmMap,
        ffi::SQLITE_IOERR_SHMMAP,
        region,
        size,
        extend,
        out
    )
}

unsafe extern "C" fn shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    forward!(file, xShmLock, ffi::SQLITE_IOERR_SHMLOCK, offset, n, flags)
}

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    // Nothing of a WAL file's is held here: barriers are called on the
    // database file, and a commit's frames are written before SQLite
    // publishes it.
    let (real, methods) = real(file);
    if let Some(m) = methods.xShmBarrier {
        m(real);
    }
}

unsafe extern "C" fn shm_unmap(file: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    forward!(file, xShmUnmap, ffi::SQLITE_OK, delete)
}

unsafe extern "C" fn fetch(
    file: *mut ffi::sqlite3_file,
    offset: i64,
    amount: c_int,
    out: *mut *mut c_void,
) -> c_int {
    let rc = flush(file);
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    let (real, methods) = real(file);
    match methods.xFetch {
        Some(m) => m(real, offset, amount, out),
        None => {
            *out = std::ptr::null_mut();
            ffi::SQLITE_OK
        }
    }
}

unsafe extern "C" fn unfetch(
    file: *mut ffi::sqlite3_file,
    offset: i64,
    page: *mut c_void,
) -> c_int {
    forward!(file, xUnfetch, ffi::SQLITE_OK, offset, page)
}

#[cfg(test)]
mod tests {
    //! Real SQLite files through the VFS, read back the way another
    //! process, or SQLite's recovery after a crash, would read them: with
    //! the platform VFS, on their own connection.

    use super::*;
    use rusqlite::{Connection, OpenFlags};
    use std::path::Path;

    thread_local! {
        /// Writes that reached a WAL file through the VFS from this
        /// thread (each test's connection is used by its own thread).
        pub(super) static WAL_WRITES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    /// The store's settings: WAL, `synchronous = NORMAL`, 1 KiB pages.
    fn open(path: &Path, vfs: bool) -> Connection {
        let conn = if vfs {
            Connection::open_with_flags_and_vfs(path, OpenFlags::default(), name().unwrap())
        } else {
            Connection::open(path)
        }
        .unwrap();
        conn.pragma_update(None, "page_size", 1024).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
        conn
    }

    fn create(conn: &Connection) {
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL);
             CREATE INDEX t_by_v ON t (v);",
        )
        .unwrap();
    }

    /// Inserts `n` rows of 100 bytes from `from` in one transaction.
    fn insert(conn: &Connection, from: i64, n: i64) {
        let tx = conn.unchecked_transaction().unwrap();
        for i in from..from + n {
            tx.execute(
                "INSERT INTO t (id, v) VALUES (?1, ?2)",
                rusqlite::params![i, format!("{i:0>100}")],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }

    fn rows(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    fn wal_len(path: &Path) -> u64 {
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        std::fs::metadata(wal).unwrap().len()
    }

    #[test]
    fn a_commit_of_many_frames_reaches_the_wal_in_two_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = open(&path, true);
        create(&conn);
        insert(&conn, 0, 10);
        let before = (WAL_WRITES.with(|n| n.get()), wal_len(&path));
        insert(&conn, 10, 100);
        let writes = WAL_WRITES.with(|n| n.get()) - before.0;
        let frames = (wal_len(&path) - before.1) / (1024 + FRAME_HEADER as u64);
        assert!(frames >= 10, "the commit wrote {frames} frames");
        assert_eq!(writes, 2, "{frames} frames took {writes} writes");
    }

    #[test]
    fn another_connection_sees_each_commit_once_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = open(&path, true);
        create(&writer);
        let reader = open(&path, false);
        for i in 0..50 {
            insert(&writer, i * 7, 7);
            assert_eq!(rows(&reader), (i + 1) * 7);
        }
    }

    #[test]
    fn what_a_kill_leaves_in_the_files_is_every_commit() {
        // The files as a `kill -9` leaves them (the page cache is the
        // file): copied while the writer is open, read back by SQLite's
        // recovery with the platform VFS.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = open(&path, true);
        create(&writer);
        for i in 0..20 {
            insert(&writer, i * 30, 30);
        }
        let copy = dir.path().join("copy.db");
        std::fs::copy(&path, &copy).unwrap();
        let mut wal = copy.as_os_str().to_owned();
        wal.push("-wal");
        let mut from = path.as_os_str().to_owned();
        from.push("-wal");
        std::fs::copy(from, wal).unwrap();
        let recovered = open(&copy, false);
        assert_eq!(rows(&recovered), 600);
        let check: String = recovered
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }

    #[test]
    fn spilled_rolled_back_and_oversized_transactions_keep_the_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = open(&path, true);
        // A cache of 20 pages: a large transaction spills frames to the
        // WAL before its commit (and rewrites some of them in place).
        writer.pragma_update(None, "cache_size", 20).unwrap();
        create(&writer);
        insert(&writer, 0, 50);
        {
            let tx = writer.unchecked_transaction().unwrap();
            for i in 1000..3000 {
                tx.execute(
                    "INSERT INTO t (id, v) VALUES (?1, ?2)",
                    rusqlite::params![i, format!("{i:0>100}")],
                )
                .unwrap();
            }
            tx.rollback().unwrap();
        }
        insert(&writer, 50, 50);
        // More than `HOLD_AT_MOST` in one commit.
        insert(&writer, 100, 15_000);
        writer
            .execute("UPDATE t SET v = v || 'x' WHERE id % 3 = 0", [])
            .unwrap();
        let reader = open(&path, false);
        assert_eq!(rows(&reader), 15_100);
        let changed: i64 = reader
            .query_row("SELECT count(*) FROM t WHERE v LIKE '%x'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(changed, 5_034);
        drop(writer);
        let check: String = reader
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }
}
