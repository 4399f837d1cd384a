package lb

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A link joins two sibling balancers (the replicas of one endpoint) so
// that each holds a copy of the other's descriptors: its listening
// sockets, which both serve, and its relays, which only the one that
// accepted them pumps. When a sibling ends, killed or stopped, the
// survivor carries its relays on (adopts them) and its listening sockets
// stay open, connections waiting in their queues included: no client of
// the endpoint notices.
//
// The survivor adopts only once the sibling is surely gone: it said "bye"
// after stopping its pumps, or its process has exited (a pidfd taken when
// the link came up). A link that breaks while the sibling lives (a bug, a
// stuck write) drops the copies it held instead; two processes never pump
// one relay.
//
// Messages are datagrams on a SOCK_SEQPACKET unix socket: a JSON header,
// with the descriptors it names as SCM_RIGHTS.
type link struct {
	conn  *net.UnixConn
	pidfd int

	mu      sync.Mutex
	queue   []message
	pending int // posted, not written yet
	wake    chan struct{}
	closed  bool
}

// message is one datagram of a link.
type message struct {
	Op     string `json:"op"`
	ID     uint64 `json:"id,omitempty"`
	Key    string `json:"key,omitempty"`    // a listener's
	Public bool   `json:"public,omitempty"` // a listener's
	Addr   string `json:"addr,omitempty"`   // a relay's backend
	fds    []int  // owned by the message until sent
}

// The operations of a link.
const (
	opListener = "listener" // a listening socket to serve: Key, Public; fd
	opReady    = "ready"    // the sender's first snapshot is complete
	opRelay    = "relay"    // a relay: ID, Addr; client fd, or six fds when attached
	opEnd      = "end"      // the relay ID ended: drop its copies
	opBye      = "bye"      // the sender stopped every pump: adopt now
)

// maxFDs per message.
const maxFDs = 6

func newLink(c *net.UnixConn) (*link, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil {
		return nil, err
	}
	if cerr != nil {
		return nil, fmt.Errorf("peer credentials: %w", cerr)
	}
	if int(cred.Uid) != os.Getuid() {
		return nil, fmt.Errorf("peer runs as uid %d, not %d", cred.Uid, os.Getuid())
	}
	pidfd, err := unix.PidfdOpen(int(cred.Pid), 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd of peer %d: %w", cred.Pid, err)
	}
	l := &link{conn: c, pidfd: pidfd, wake: make(chan struct{}, 1)}
	go l.send()
	return l, nil
}

// post queues m (its descriptors are dups that the link closes once sent).
func (l *link) post(m message) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		closeAll(m.fds)
		return
	}
	l.queue = append(l.queue, m)
	l.pending++
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// postDup queues m with copies of fds.
func (l *link) postDup(m message, fds ...int) error {
	for _, fd := range fds {
		d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			closeAll(m.fds)
			return fmt.Errorf("dup: %w", err)
		}
		m.fds = append(m.fds, d)
	}
	l.post(m)
	return nil
}

// send writes queued messages in order until the link closes.
func (l *link) send() {
	for {
		l.mu.Lock()
		q := l.queue
		l.queue = nil
		closed := l.closed
		l.mu.Unlock()
		for i, m := range q {
			err := l.write(m)
			closeAll(m.fds)
			l.mu.Lock()
			l.pending--
			l.mu.Unlock()
			if err != nil {
				for _, m := range q[i+1:] {
					closeAll(m.fds)
				}
				l.close()
				return
			}
		}
		if closed {
			return
		}
		if len(q) == 0 {
			<-l.wake
		}
	}
}

func (l *link) write(m message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	var oob []byte
	if len(m.fds) > 0 {
		oob = unix.UnixRights(m.fds...)
	}
	l.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _, err = l.conn.WriteMsgUnix(b, oob, nil)
	return err
}

// flush waits (up to d) until every queued message is written.
func (l *link) flush(d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		empty := l.pending == 0 || l.closed
		l.mu.Unlock()
		if empty {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// receive reads the next message with its descriptors.
func (l *link) receive() (message, error) {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(maxFDs*4))
	n, oobn, flags, _, err := l.conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return message{}, err
	}
	var fds []int
	if oobn > 0 {
		cmsgs, perr := unix.ParseSocketControlMessage(oob[:oobn])
		if perr != nil {
			return message{}, fmt.Errorf("control message: %w", perr)
		}
		for _, c := range cmsgs {
			got, err := unix.ParseUnixRights(&c)
			if err == nil {
				fds = append(fds, got...)
			}
		}
	}
	if n == 0 && oobn == 0 {
		return message{}, errors.New("link closed")
	}
	var m message
	if err := json.Unmarshal(buf[:n], &m); err != nil || flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		closeAll(fds)
		return message{}, fmt.Errorf("bad message (flags %#x): %v", flags, err)
	}
	m.fds = fds
	return m, nil
}

// peerGone waits up to d for the peer's process to exit.
func (l *link) peerGone(d time.Duration) bool {
	fds := []unix.PollFd{{Fd: int32(l.pidfd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, int(d.Milliseconds()))
		if err == unix.EINTR {
			continue
		}
		return err == nil && n > 0
	}
}

// close ends the link; queued messages are dropped.
func (l *link) close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	q := l.queue
	l.queue = nil
	l.mu.Unlock()
	for _, m := range q {
		closeAll(m.fds)
	}
	l.conn.Close()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}
