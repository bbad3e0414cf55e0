//! The program allocator's one option: keep freed memory mapped.
#![allow(unsafe_code)]

/// mimalloc's `mi_option_purge_delay` (`mimalloc.h`, the same index in its v2 and v3): how
/// long freed memory stays mapped before it goes back to the kernel, in milliseconds.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// The environment variable that sets the same option; a user's own setting wins.
pub const PURGE_DELAY_ENV: &str = "MIMALLOC_PURGE_DELAY";

/// Keeps freed memory mapped for the life of the process (purge delay −1). A training step
/// frees and reallocates the same large buffers; by default mimalloc returns them to the
/// kernel after 1 s and every step faults their pages in again, zeroed by the kernel (75,000
/// page faults and about 5% of a d256 step in `scalelab bench`, BENCHMARKS.md). Only has an
/// effect in a program whose global allocator is mimalloc (the `scalelab` binary).
pub fn keep_freed_memory() {
    if std::env::var_os(PURGE_DELAY_ENV).is_some() {
        return;
    }
    // SAFETY: `mi_option_set` stores an integer in mimalloc's option table (atomically); it has
    // no preconditions on its arguments, and purge_delay accepts any value (−1: never purge).
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The purge delay mimalloc uses now, in milliseconds.
    fn purge_delay() -> std::os::raw::c_long {
        // SAFETY: `mi_option_get` reads an integer from mimalloc's option table.
        unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }
    }

    /// Index 15 is the purge delay: its default is mimalloc v3's 1000 ms (`src/options.c` of
    /// the C sources libmimalloc-sys 0.1.49 builds), and `keep_freed_memory` sets it to −1.
    #[test]
    fn the_allocator_keeps_freed_memory_mapped() {
        if std::env::var_os(PURGE_DELAY_ENV).is_some() {
            return; // the user's setting wins; nothing to check
        }
        assert_eq!(purge_delay(), 1000);
        keep_freed_memory();
        assert_eq!(purge_delay(), -1);
    }
}
