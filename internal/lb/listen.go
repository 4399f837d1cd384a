package lb

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A listener is one listening socket the balancer accepts from: its own,
// or a sibling's copy (both serve it).
type listener struct {
	key    string
	public bool
	f      *os.File
	fd     int
	ino    uint64 // the socket's identity, the same in every holder
	addr   string
	done   chan struct{}
}

// Listen serves addr as the public side (filtered by SetAccess). The
// address may be shared (SO_REUSEPORT) with other balancers of the same
// user: the kernel spreads new connections over them.
func (b *Balancer) Listen(addr string) error {
	return b.ListenKey("public "+addr, true, func() (int, error) { return listenFD(addr) })
}

// ListenKey serves the listening sockets known as key: those the sibling
// shares (after Pair, it waits up to Settle for them), else one that open
// makes, which it shares with the sibling. Keys name what is served (an
// address, in a namespace): a key is served until Unlisten.
func (b *Balancer) ListenKey(key string, public bool, open func() (int, error)) error {
	b.waitSettled()
	b.mu.Lock()
	have := len(b.listeners[key]) > 0
	delete(b.retired, key)
	b.mu.Unlock()
	if have {
		return nil
	}
	fd, err := open()
	if err != nil {
		return fmt.Errorf("load balancer %s: listen %s: %w", b.cfg.Name, key, err)
	}
	b.addListener(key, public, fd, true)
	return nil
}

// Unlisten stops serving key and closes this balancer's copies of its
// sockets.
func (b *Balancer) Unlisten(key string) {
	b.mu.Lock()
	lns := b.listeners[key]
	delete(b.listeners, key)
	b.retired[key] = true
	b.mu.Unlock()
	for _, ln := range lns {
		ln.f.SetReadDeadline(time.Now())
		<-ln.done
		ln.f.Close()
	}
}

// Addrs are the addresses of the sockets served, by key.
func (b *Balancer) Addrs() map[string][]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string][]string{}
	for k, lns := range b.listeners {
		for _, ln := range lns {
			out[k] = append(out[k], ln.addr)
		}
	}
	return out
}

// addListener serves the listening socket fd (owned) under key, unless it
// is one already served; share gives the sibling a copy.
func (b *Balancer) addListener(key string, public bool, fd int, share bool) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return
	}
	unix.SetNonblock(fd, true)
	ln := &listener{key: key, public: public, fd: fd, ino: st.Ino, addr: sockName(fd), done: make(chan struct{})}
	b.mu.Lock()
	if b.closed || b.stopping || b.retired[key] {
		b.mu.Unlock()
		unix.Close(fd)
		return
	}
	for _, o := range b.listeners[key] {
		if o.ino == ln.ino {
			b.mu.Unlock()
			unix.Close(fd)
			return
		}
	}
	ln.f = os.NewFile(uintptr(fd), key)
	b.listeners[key] = append(b.listeners[key], ln)
	if share && b.link != nil {
		b.link.postDup(message{Op: opListener, Key: key, Public: public}, fd)
	}
	b.accepts.Add(1)
	b.mu.Unlock()
	go func() {
		defer b.accepts.Done()
		defer close(ln.done)
		b.accept(ln)
	}()
}

// accept starts a relay for each connection on ln until it is stopped.
func (b *Balancer) accept(ln *listener) {
	rc, err := ln.f.SyscallConn()
	if err != nil {
		return
	}
	for {
		var nfd int
		var sa unix.Sockaddr
		var aerr error
		err := rc.Read(func(fd uintptr) bool {
			nfd, sa, aerr = unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			return aerr != unix.EAGAIN
		})
		if err != nil {
			return // stopped, or closed
		}
		switch aerr {
		case nil:
		case unix.EINTR, unix.ECONNABORTED:
			continue
		default: // out of descriptors or memory: let it pass
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if ln.public && !b.allowed(sockaddrAddr(sa)) {
			unix.Close(nfd)
			continue
		}
		// As Go's net package does for every TCP socket (the backend's
		// has it from net.Dial): the relay forwards what it gets at once,
		// and Nagle's algorithm would hold back the small tail of a reply.
		unix.SetsockoptInt(nfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		b.start(newRelay(newID(), nfd))
	}
}

// stopAccepting ends every accept loop without closing the sockets (the
// sibling keeps serving its copies).
func (b *Balancer) stopAccepting() {
	b.mu.Lock()
	for _, lns := range b.listeners {
		for _, ln := range lns {
			ln.f.SetReadDeadline(time.Now())
		}
	}
	b.mu.Unlock()
	b.accepts.Wait()
}

// listenFD opens a listening TCP socket on addr (IP:port) with
// SO_REUSEPORT, non-blocking.
func listenFD(addr string) (int, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return -1, err
	}
	var sa unix.Sockaddr
	domain := unix.AF_INET
	if ap.Addr().Is4() {
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	} else {
		domain = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	fd, err := unix.Socket(domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	for _, opt := range []int{unix.SO_REUSEADDR, unix.SO_REUSEPORT} {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, 1); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if err := unix.Listen(fd, 4096); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// ListenFD opens a listening socket as Listen does, for ListenKey's open
// (for instance inside a network namespace).
func ListenFD(addr string) (int, error) { return listenFD(addr) }

// ListenShared opens a TCP listener on addr with SO_REUSEPORT, so that
// several processes (the replicas of one endpoint) can serve it.
func ListenShared(addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	return lc.Listen(context.Background(), "tcp", addr)
}

func sockName(fd int) string {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return ""
	}
	a := sockaddrAddr(sa)
	switch s := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(a, uint16(s.Port)).String()
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(a, uint16(s.Port)).String()
	}
	return ""
}

func sockaddrAddr(sa unix.Sockaddr) netip.Addr {
	switch s := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrFrom4(s.Addr)
	case *unix.SockaddrInet6:
		return netip.AddrFrom16(s.Addr).Unmap()
	}
	return netip.Addr{}
}
