/*
 * test-init: a stand-in agent for the runtime's integration tests. It runs
 * as PID 1 of a sandbox, accepts connections on the listener it inherits as
 * fd 3 and reads one request from each, up to the client's half-close:
 *
 *   "ping"       answers "pong\n" (the agent is accepting);
 *   anything     runs it with /bin/sh -c, the output (stdout and stderr) going
 *                to the connection, then writes "\n__EXIT__ <status>\n"
 *                (128 + signal when killed).
 *
 * Commands run with oom_score_adj 0, as the real agent's do. Like the real
 * agent, it first installs the seccomp filter the runtime hands over
 * compiled on fd 4 (`--seccomp-fd 4`), and exits if it cannot. Built with
 * gcc -static so it needs nothing from the sandbox image.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void reap(int sig) {
    (void)sig;
    int saved = errno;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    errno = saved;
}

/* Reads until the client shuts down its side. */
static int read_request(int fd, char *buf, size_t size) {
    size_t n = 0;
    for (;;) {
        if (n + 1 >= size) return -1;
        ssize_t r = read(fd, buf + n, size - 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    return 0;
}

static void serve(int conn) {
    char cmd[65536];
    signal(SIGCHLD, SIG_DFL);
    if (read_request(conn, cmd, sizeof cmd) < 0) _exit(1);
    if (strcmp(cmd, "ping") == 0) {
        (void)!write(conn, "pong\n", 5);
        _exit(0);
    }
    int adj = open("/proc/self/oom_score_adj", O_WRONLY);
    if (adj >= 0) {
        (void)!write(adj, "0", 1);
        close(adj);
    }
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, 0);
        dup2(conn, 1);
        dup2(conn, 2);
        /* Background jobs must not keep the connection open. */
        if (conn > 2) close(conn);
        if (devnull > 2) close(devnull);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    char tail[64];
    int len = snprintf(tail, sizeof tail, "\n__EXIT__ %d\n", code);
    (void)!write(conn, tail, len);
    _exit(0);
}

/* Installs the BPF program on `fd` (see the agent's `seccomp.rs`). */
static int install_filter(int fd) {
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size <= 0 || st.st_size % sizeof(struct sock_filter)) return -1;
    struct sock_filter *prog = malloc((size_t)st.st_size);
    if (!prog || pread(fd, prog, (size_t)st.st_size, 0) != st.st_size) return -1;
    close(fd);
    struct sock_fprog fprog = {
        .len = (unsigned short)(st.st_size / sizeof(struct sock_filter)),
        .filter = prog,
    };
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog);
}

int main(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--seccomp-fd") == 0 && install_filter(atoi(argv[i + 1])) != 0) {
            perror("test-init: installing the seccomp filter");
            return 1;
        }
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = reap;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);
    for (;;) {
        int conn = accept(3, NULL, NULL);
        if (conn < 0) {
            if (errno == EINTR) continue;
            return 1;
        }
        if (fork() == 0) {
            close(3);
            serve(conn);
        }
        close(conn);
    }
}
