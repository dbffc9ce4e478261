//! The open-file limit of the test process, raised so hundreds of clients fit.

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (the default soft limit of
/// 1024 is below what a test or benchmark with many clients opens).
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a valid, initialised struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}
