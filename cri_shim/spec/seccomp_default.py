"""Stowage's RuntimeDefault seccomp policy, as data.

Shape: everything not listed fails with EPERM; an allow-list covers what ordinary processes
(libc, language runtimes, shells, servers) call. Syscalls that reach global kernel state, load
code into the kernel, or cross container boundaries are left out, and come back only when the
container holds the capability that the kernel would check for them anyway. That keeps the
filter from breaking a container that was deliberately granted, say, CAP_SYS_ADMIN, while a
default container keeps a second fence in front of kernel code it has no business reaching.

Written for Stowage from the Linux syscall tables and man pages. `render` in seccomp.py turns it
into the OCI `linux.seccomp` object for one container (its capabilities and the host's
architecture). Names a kernel or libseccomp does not know for an architecture are skipped by
runc and crun, so one list can name both 64-bit and 32-bit-compat calls.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ARCH_FAMILIES",
    "CLONE_NAMESPACE_FLAGS",
    "DEFAULT_ERRNO",
    "ENOSYS",
    "RULES",
    "Arg",
    "Rule",
]

DEFAULT_ERRNO = 1  # EPERM: what a process expects from a call it may not make
ENOSYS = 38  # "not implemented": makes libc fall back to an older call (clone3 -> clone)

# CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
# CLONE_NEWNET. Creating namespaces is a CAP_SYS_ADMIN matter (user namespaces aside, and those
# are the usual first step of a kernel exploit), so plain clone/unshare may not set these bits.
CLONE_NAMESPACE_FLAGS = 0x7E020000
CLONE_NEWTIME = 0x00000080  # valid for unshare only; for clone the bit belongs to CSIGNAL

# The seccomp architectures a profile covers on each host architecture: the native one plus the
# compat ABIs a binary could use to reach the same kernel through another syscall table.
ARCH_FAMILIES: dict[str, tuple[str, ...]] = {
    "amd64": ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "arm64": ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"),
}


@dataclass(frozen=True)
class Arg:
    """A condition on one syscall argument (OCI `LinuxSeccompArg`)."""

    index: int
    value: int
    op: str
    value_two: int = 0


@dataclass(frozen=True)
class Rule:
    """Syscalls with one action, applied when the conditions on the container hold.

    `if_cap`: only when the container has this capability. `unless_cap`: only when it lacks it
    (for the restricted variant of a call that the capability unlocks fully). `arches`: host
    architectures (keys of ARCH_FAMILIES) the rule exists on; empty means all.
    """

    names: tuple[str, ...]
    action: str = "SCMP_ACT_ALLOW"
    errno: int | None = None
    args: tuple[Arg, ...] = ()
    if_cap: str | None = None
    unless_cap: str | None = None
    arches: tuple[str, ...] = ()


def _names(text: str) -> tuple[str, ...]:
    return tuple(sorted(set(text.split())))


# Files, descriptors, memory, signals, time reading, scheduling of oneself, sockets, IPC within
# the container's own IPC namespace, and identity changes the kernel already guards by
# capability (setuid & co.). Includes the *_time64 and 32-bit variants for compat binaries.
_BASE = _names(
    """
    accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown
    chown32 clock_getres clock_getres_time64 clock_gettime clock_gettime64 clock_nanosleep
    clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2 dup3
    epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait
    epoll_wait_old eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2
    fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchmodat2 fchown
    fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr
    fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex
    futex_requeue futex_time64 futex_wait futex_waitv futex_wake futimesat get_robust_list
    get_thread_area getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 getgid
    getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid
    getpriority getrandom getresgid getresgid32 getresuid getresuid32 getrlimit getrusage getsid
    getsockname getsockopt gettid gettimeofday getuid getuid32 getxattr inotify_add_watch
    inotify_init inotify_init1 inotify_rm_watch io_cancel io_destroy io_getevents io_pgetevents
    io_pgetevents_time64 io_setup io_submit ioctl ioprio_get ioprio_set ipc kill
    landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr
    link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64
    madvise map_shadow_stack membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod
    mknodat mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open
    mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap
    mseal msgctl msgget msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at
    nanosleep newfstatat _newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe
    pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv
    preadv2 prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read
    readahead readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg
    remap_file_pages removexattr rename renameat renameat2 restart_syscall rmdir rseq
    rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend
    rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_get_priority_max
    sched_get_priority_min sched_getaffinity sched_getattr sched_getparam sched_getscheduler
    sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr
    sched_setparam sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
    semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto set_robust_list
    set_thread_area set_tid_address setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32
    setgroups setgroups32 setitimer setpgid setpriority setregid setregid32 setresgid
    setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit setsid setsockopt setuid
    setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4
    sigpending sigprocmask sigreturn socket socketcall socketpair splice stat stat64 statfs
    statfs64 statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time
    timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime
    timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime
    timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat
    utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
    """
)

# Per-architecture calls with no counterpart elsewhere.
_X86_ONLY = _names("arch_prctl")
_ARM_ONLY = _names(
    "arm_fadvise64_64 arm_sync_file_range breakpoint cacheflush set_tls sync_file_range2"
)

# personality(2) changes how the kernel treats the process (e.g. READ_IMPLIES_EXEC, address
# layout randomisation off). Only the values real programs use are allowed: PER_LINUX,
# PER_LINUX32, UNAME26 with each, and 0xffffffff, which only queries.
_PERSONALITY_VALUES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

# Capability-gated calls: each is usable by a default container only if it holds the
# capability the kernel checks for the same call.
_BY_CAPABILITY: dict[str, tuple[str, ...]] = {
    "CAP_SYS_ADMIN": _names(
        """
        bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount
        mount_setattr move_mount open_tree perf_event_open pivot_root quotactl quotactl_fd
        setdomainname sethostname setns swapoff swapon syslog umount umount2 unshare
        """
    ),
    "CAP_BPF": ("bpf",),
    "CAP_PERFMON": ("perf_event_open",),
    "CAP_SYS_BOOT": ("reboot",),
    "CAP_SYS_CHROOT": ("chroot",),
    "CAP_SYS_MODULE": ("delete_module", "finit_module", "init_module"),
    "CAP_SYS_PACCT": ("acct",),
    "CAP_SYS_PTRACE": _names(
        "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace"
    ),
    "CAP_SYS_TIME": _names(
        "clock_adjtime clock_adjtime64 clock_settime clock_settime64 settimeofday stime"
    ),
    "CAP_SYS_TTY_CONFIG": ("vhangup",),
    "CAP_SYS_NICE": _names(
        "get_mempolicy mbind migrate_pages move_pages set_mempolicy set_mempolicy_home_node"
    ),
    "CAP_SYSLOG": ("syslog",),
    "CAP_DAC_READ_SEARCH": ("open_by_handle_at",),
}

_X86_BY_CAPABILITY: dict[str, tuple[str, ...]] = {
    "CAP_SYS_RAWIO": ("ioperm", "iopl"),
}


def _build() -> tuple[Rule, ...]:
    rules: list[Rule] = [
        Rule(_BASE),
        Rule(_X86_ONLY, arches=("amd64",)),
        Rule(_ARM_ONLY, arches=("arm64",)),
    ]
    rules.extend(
        Rule(("personality",), args=(Arg(0, value, "SCMP_CMP_EQ"),))
        for value in _PERSONALITY_VALUES
    )
    # Without CAP_SYS_ADMIN: threads and forks yes, new namespaces no. clone3 takes its flags
    # in a struct that seccomp cannot read, so it answers ENOSYS and libc falls back to clone.
    rules.append(
        Rule(
            ("clone",),
            args=(Arg(0, CLONE_NAMESPACE_FLAGS, "SCMP_CMP_MASKED_EQ", 0),),
            unless_cap="CAP_SYS_ADMIN",
        )
    )
    rules.append(
        Rule(
            ("unshare",),
            args=(Arg(0, CLONE_NAMESPACE_FLAGS | CLONE_NEWTIME, "SCMP_CMP_MASKED_EQ", 0),),
            unless_cap="CAP_SYS_ADMIN",
        )
    )
    rules.append(
        Rule(("clone3",), action="SCMP_ACT_ERRNO", errno=ENOSYS, unless_cap="CAP_SYS_ADMIN")
    )
    rules.extend(Rule(names, if_cap=cap) for cap, names in _BY_CAPABILITY.items())
    rules.extend(
        Rule(names, if_cap=cap, arches=("amd64",)) for cap, names in _X86_BY_CAPABILITY.items()
    )
    return tuple(rules)


RULES: tuple[Rule, ...] = _build()
