package lb

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A relay is one forwarded connection whose whole state is in the kernel:
// the client's socket, the backend's socket and a pipe each way. Bytes go
// socket → pipe → socket with splice(2) and never through this process's
// memory, and no counter or buffer of the relay lives here. So any process
// that holds the relay's descriptors can carry it on exactly where another
// one stopped, even one killed between two system calls, without losing
// or repeating a byte: it first empties the pipes, then goes on. That is
// how a replica's sibling takes over its connections (link.go).
//
// At most one process pumps a relay at a time; the others only hold its
// descriptors, as plain numbers: a holder does not watch the sockets (no
// poller of its own wakes on every packet the pumping process moves).
type relay struct {
	id       uint64
	clientFD int
	peer     netip.Addr // the client's address
	// Set once attached to a backend.
	backendFD int
	addr      string // the backend's address
	// The sockets, registered with this process's poller while it pumps
	// the relay (open).
	client, backend *os.File
	up, down        [2]int // pipes client→backend and backend→client: read and write ends

	mu      sync.Mutex
	quit    chan struct{} // closed by stop and kill: a pump waiting at the gate returns
	stopped bool          // handed over: pumps stop without touching the sockets
	adopted bool          // from the sibling
	ended   bool
}

// chunk is the most one splice moves (a pipe's default capacity).
const chunk = 64 << 10

// newRelay wraps an accepted client socket (a non-blocking descriptor,
// which the relay owns).
func newRelay(id uint64, clientFD int) *relay {
	r := &relay{id: id, clientFD: clientFD, backendFD: -1, up: [2]int{-1, -1}, down: [2]int{-1, -1}, quit: make(chan struct{})}
	if sa, err := unix.Getpeername(clientFD); err == nil {
		r.peer = sockaddrAddr(sa).Unmap()
	}
	return r
}

// attach gives the relay its backend socket (owned) and makes its pipes.
func (r *relay) attach(addr string, backendFD int) error {
	if err := unix.Pipe2(r.up[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return fmt.Errorf("pipe: %w", err)
	}
	if err := unix.Pipe2(r.down[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		unix.Close(r.up[0])
		unix.Close(r.up[1])
		r.up = [2]int{-1, -1}
		return fmt.Errorf("pipe: %w", err)
	}
	r.addr = addr
	r.backendFD = backendFD
	return nil
}

// adopt makes a relay of descriptors received from a sibling (owned).
func adoptRelay(id uint64, addr string, fds []int) *relay {
	r := newRelay(id, fds[0])
	r.adopted = true
	if len(fds) == 6 {
		r.addr = addr
		r.backendFD = fds[1]
		r.up = [2]int{fds[2], fds[3]}
		r.down = [2]int{fds[4], fds[5]}
	}
	return r
}

// attached reports whether the relay has its backend.
func (r *relay) attached() bool { return r.backendFD >= 0 }

// open registers the relay's sockets with this process's poller, to pump
// it here.
func (r *relay) open() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.client == nil {
		r.client = os.NewFile(uintptr(r.clientFD), "client")
	}
	if r.backend == nil && r.backendFD >= 0 {
		r.backend = os.NewFile(uintptr(r.backendFD), "backend")
	}
}

// fds are the relay's descriptors in the order adoptRelay takes them.
func (r *relay) fds() []int {
	out := []int{r.clientFD}
	if r.attached() {
		out = append(out, r.backendFD, r.up[0], r.up[1], r.down[0], r.down[1])
	}
	return out
}

// run pumps both ways until both directions end (or one fails, or the
// other lingers for grace after the first ended), then ends the relay.
// Bytes to the backend wait while g is held.
// It returns false, leaving the relay as it is, when it was stopped to be
// handed over, and why the relay ended (nil: both ways ended cleanly).
func (r *relay) run(grace time.Duration, g *gate) (bool, error) {
	r.open()
	done := make(chan error, 2)
	go func() { done <- pump(r.client, r.backend, r.up, g, r.quit) }()
	go func() { done <- pump(r.backend, r.client, r.down, nil, r.quit) }()
	err := <-done
	if err != nil && !r.isStopped() {
		r.kill() // one way failed: end the other at once
	}
	select {
	case err2 := <-done:
		err = errors.Join(err, err2)
	case <-time.After(grace):
		r.kill()
		<-done
	}
	if r.isStopped() {
		return false, nil
	}
	return true, err
}

// pump moves bytes from src to dst through the pipe p until src ends (then
// it shuts dst's sending side) or fails, or a deadline stops it. It empties
// the pipe first: a previous owner may have left bytes there. How much the
// pipe holds is asked of the kernel once; then this process knows. Bytes
// read wait in the pipe while g is held (quit ends the wait).
func pump(src, dst *os.File, p [2]int, g *gate, quit <-chan struct{}) error {
	srcRC, err := src.SyscallConn()
	if err != nil {
		return err
	}
	dstRC, err := dst.SyscallConn()
	if err != nil {
		return err
	}
	inPipe, err := unix.IoctlGetInt(p[0], unix.TIOCINQ)
	if err != nil {
		return fmt.Errorf("pipe: %w", err)
	}
	for {
		if inPipe > 0 {
			if err := g.wait(quit); err != nil {
				return err
			}
		}
		if err := flush(dstRC, p[0], inPipe); err != nil {
			return err
		}
		var serr error
		err := srcRC.Read(func(fd uintptr) bool {
			inPipe, serr = spliceRetry(int(fd), p[1], chunk)
			return serr != unix.EAGAIN
		})
		if err != nil {
			return err
		}
		if serr != nil {
			return serr
		}
		if inPipe == 0 { // end of stream
			return shutdownRaw(dstRC, unix.SHUT_WR)
		}
	}
}

// flush moves the n bytes in the pipe whose read end is r to dst.
func flush(dst syscall.RawConn, r, n int) error {
	for n > 0 {
		var moved int
		var serr error
		err := dst.Write(func(fd uintptr) bool {
			moved, serr = spliceRetry(r, int(fd), n)
			return serr != unix.EAGAIN
		})
		if err != nil {
			return err
		}
		if serr != nil {
			return serr
		}
		n -= moved
	}
	return nil
}

func spliceRetry(in, out, n int) (int, error) {
	for {
		m, err := unix.Splice(in, nil, out, nil, n, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		if err != unix.EINTR {
			return int(m), err
		}
	}
}

func shutdownRaw(rc syscall.RawConn, how int) error {
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Shutdown(int(fd), how) }); err != nil {
		return err
	}
	if serr == unix.ENOTCONN {
		return nil
	}
	return serr
}

func (r *relay) isStopped() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopped
}

// stop makes the pumps return without touching the sockets, so that
// another process can carry the relay on. Safe to call before run.
func (r *relay) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	r.closeQuitLocked()
	now := time.Now()
	for _, f := range []*os.File{r.client, r.backend} {
		if f != nil {
			f.SetDeadline(now)
		}
	}
}

// kill shuts both sockets down for good (every holder's copy: the peer's
// descriptors refer to the same sockets), which ends the pumps.
func (r *relay) kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closeQuitLocked()
	for _, fd := range []int{r.clientFD, r.backendFD} {
		if fd >= 0 {
			unix.Shutdown(fd, unix.SHUT_RDWR)
		}
	}
}

// end shuts the sockets down and closes this process's descriptors.
func (r *relay) end() {
	r.mu.Lock()
	if r.ended {
		r.mu.Unlock()
		return
	}
	r.ended = true
	r.mu.Unlock()
	r.kill()
	r.release()
}

// release closes this process's descriptors without touching the sockets
// (a sibling's copies keep them open).
func (r *relay) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range []struct {
		f  *os.File
		fd *int
	}{{r.client, &r.clientFD}, {r.backend, &r.backendFD}} {
		switch {
		case s.f != nil:
			s.f.Close()
		case *s.fd >= 0:
			unix.Close(*s.fd)
		}
		*s.fd = -1
	}
	r.client, r.backend = nil, nil
	for _, fd := range []int{r.up[0], r.up[1], r.down[0], r.down[1]} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	r.up, r.down = [2]int{-1, -1}, [2]int{-1, -1}
}

func (r *relay) closeQuitLocked() {
	select {
	case <-r.quit:
	default:
		close(r.quit)
	}
}
