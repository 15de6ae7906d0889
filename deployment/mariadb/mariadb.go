// Package mariadb runs a private MariaDB server as a child process on
// loopback: `make run` keeps the appliance's database in one, and the tests
// (through testing/stack) start one each.
//
// Everything it starts lives under one directory the caller owns; nothing is
// installed system-wide except Debian packages that are missing (see
// EnsurePackages), and no port is fixed: ports are taken free from the kernel
// unless the caller asks for a specific one.
//
// Accounts: the data directory is initialised with no password-less account
// at all. The only administrator is the operating-system user running the
// server, authenticated by the unix_socket plugin over the server's socket
// (a directory only that user can enter); see [Server.AdminDSN]. Services get
// their own accounts with passwords and only the privileges they need.
package mariadb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Server is a private mariadbd process listening on 127.0.0.1.
type Server struct {
	Dir  string // data and runtime files
	Port int

	cmd  *exec.Cmd
	done chan struct{}
	err  error // exit status, valid after done is closed
	once sync.Once
}

// Options tune the private server.
type Options struct {
	// Port to listen on; 0 picks a free one.
	Port int
	// BufferPoolMB is innodb_buffer_pool_size in MiB (default 256).
	BufferPoolMB int
	// Durable keeps innodb_flush_log_at_trx_commit=1 (fsync per commit).
	// Tests turn it off for speed; `make run` keeps it on.
	Durable bool
	// Log receives the server's error log lines path; empty means Dir/mysqld.err.
	ErrorLog string
}

// Start initialises dir as a MariaDB data directory if it is empty, and
// starts mariadbd on it. It returns once the server accepts connections.
// A second call on the same dir reuses the data.
func Start(ctx context.Context, dir string, o Options) (*Server, error) {
	if err := EnsurePackages(ctx, map[string]string{"mariadbd": "mariadb-server", "mariadb": "mariadb-client"}); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	tmp := filepath.Join(dir, "tmp") // private: servers of parallel tests share nothing
	for _, d := range []string{data, tmp} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(data, "mysql")); errors.Is(err, os.ErrNotExist) {
		out, err := exec.CommandContext(ctx, "mariadb-install-db",
			"--no-defaults", "--user="+currentUser(), "--datadir="+data,
			"--auth-root-authentication-method=socket", "--skip-test-db", "--tmpdir="+tmp).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("mariadb-install-db: %v\n%s", err, out)
		}
	}
	if o.Port == 0 {
		if o.Port, err = FreePort(); err != nil {
			return nil, err
		}
	}
	if o.BufferPoolMB == 0 {
		o.BufferPoolMB = 256
	}
	if o.ErrorLog == "" {
		o.ErrorLog = filepath.Join(dir, "mysqld.err")
	}
	flush := "2"
	if o.Durable {
		flush = "1"
	}
	cnf := fmt.Sprintf(`[mariadbd]
datadir=%s
tmpdir=%s
socket=%s
pid-file=%s
port=%d
bind-address=127.0.0.1
user=%s
innodb_buffer_pool_size=%dM
innodb_flush_log_at_trx_commit=%s
innodb_log_file_size=128M
max_connections=500
log-error=%s
skip-name-resolve
skip-log-bin
character-set-server=utf8mb4
`, data, tmp, filepath.Join(dir, "mysqld.sock"), filepath.Join(dir, "mysqld.pid"), o.Port,
		currentUser(), o.BufferPoolMB, flush, o.ErrorLog)
	cnfPath := filepath.Join(dir, "my.cnf")
	if err := os.WriteFile(cnfPath, []byte(cnf), 0o600); err != nil {
		return nil, err
	}
	// A stale pid file from a killed server would make mariadbd refuse to start.
	_ = os.Remove(filepath.Join(dir, "mysqld.pid"))

	m := &Server{Dir: dir, Port: o.Port, done: make(chan struct{})}
	m.cmd = exec.Command("mariadbd", "--defaults-file="+cnfPath)
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start mariadbd: %w", err)
	}
	go func() { m.err = m.cmd.Wait(); close(m.done) }()

	deadline := time.Now().Add(60 * time.Second)
	for {
		db, err := sql.Open("mysql", m.AdminDSN(""))
		if err == nil {
			err = db.PingContext(ctx)
			db.Close()
		}
		if err == nil {
			return m, nil
		}
		select {
		case <-m.done:
			log, _ := os.ReadFile(o.ErrorLog)
			return nil, fmt.Errorf("mariadbd exited (%v) before accepting connections:\n%s", m.err, tail(string(log), 20))
		case <-ctx.Done():
			m.Stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			m.Stop()
			return nil, fmt.Errorf("mariadbd not ready after 60s: %v", err)
		}
	}
}

// AdminDSN is the DSN of the server's administrator for database db (""
// for none): the operating-system user running the server, authenticated
// over the unix socket by peer credentials, with no password.
func (m *Server) AdminDSN(db string) string {
	c := mysql.NewConfig()
	c.User = currentUser()
	c.Net = "unix"
	c.Addr = filepath.Join(m.Dir, "mysqld.sock")
	c.DBName = db
	return c.FormatDSN()
}

// CreateDatabase creates database name (if missing) and a user of the same
// name with password pass that may do anything in it over TCP from
// loopback, for tests. It returns the DSN for that user.
func (m *Server) CreateDatabase(ctx context.Context, name, pass string) (string, error) {
	db, err := sql.Open("mysql", m.AdminDSN(""))
	if err != nil {
		return "", err
	}
	defer db.Close()
	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS `" + name + "`",
		"CREATE USER IF NOT EXISTS '" + name + "'@'127.0.0.1' IDENTIFIED BY '" + pass + "'",
		"GRANT ALL ON `" + name + "`.* TO '" + name + "'@'127.0.0.1'",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return "", fmt.Errorf("%s: %w", q, err)
		}
	}
	return m.DSN(name, pass, name), nil
}

// DSN is the TCP DSN of account user with password pass for database db.
func (m *Server) DSN(user, pass, db string) string {
	c := mysql.NewConfig()
	c.User, c.Passwd, c.Net = user, pass, "tcp"
	c.Addr = m.Addr()
	c.DBName = db
	c.ParseTime = true
	return c.FormatDSN()
}

// Addr is the server's TCP address, 127.0.0.1:port.
func (m *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(m.Port) }

// Stop terminates the server and waits for it to exit (at most 30 s, then it
// is killed).
func (m *Server) Stop() error {
	m.once.Do(func() {
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.done:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
			<-m.done
		}
	})
	return nil
}

// Kill stops the server abruptly, as a crash or power loss would.
func (m *Server) Kill() {
	m.once.Do(func() {
		_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
		<-m.done
	})
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	ps, err := FreePorts(1)
	if err != nil {
		return 0, err
	}
	return ps[0], nil
}

// FreePorts returns n distinct TCP ports on 127.0.0.1 that were free a
// moment ago (all are held until all are chosen: the kernel would otherwise
// hand out a just-released port again).
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

var aptMu sync.Mutex

// EnsurePackages installs, with apt-get, the Debian package named for every
// command in cmds that is not on PATH.
func EnsurePackages(ctx context.Context, cmds map[string]string) error {
	aptMu.Lock()
	defer aptMu.Unlock()
	var missing []string
	for c, pkg := range cmds {
		if _, err := exec.LookPath(c); err != nil {
			if _, err := os.Stat("/usr/sbin/" + c); err == nil {
				continue
			}
			missing = append(missing, pkg)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("missing Debian packages %v; install them as root: apt-get install -y %s", missing, strings.Join(missing, " "))
	}
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	upd := exec.CommandContext(ctx, "apt-get", "update", "-qq")
	upd.Env = env
	if out, err := upd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get update: %v\n%s", err, out)
	}
	inst := exec.CommandContext(ctx, "apt-get", append([]string{"install", "-y", "-qq", "--no-install-recommends"}, missing...)...)
	inst.Env = env
	if out, err := inst.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get install %v: %v\n%s", missing, err, out)
	}
	return nil
}

// currentUser is the name the server gives this process's user: both run
// as the same user, and unix_socket authentication maps the peer's uid to a
// name with the same password database.
func currentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return strconv.Itoa(os.Geteuid())
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
