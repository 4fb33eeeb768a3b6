"""Throwaway recording proxy. Each connection (TCP) or client address (UDP)
is written to OUT_PREFIX-N.cap as records: 1 byte 'C' (client->server) or
'S' (server->client), u32 big-endian length, then the bytes of one recv()
(TCP) or one datagram (UDP), in the order they were seen."""
import socket, sys, threading, struct, select

mode, listen_port, up_port, prefix = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
lock = threading.Lock()

def tcp():
    ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(('127.0.0.1', listen_port)); ls.listen(64)
    n = 0
    while True:
        c, _ = ls.accept()
        u = socket.create_connection(('127.0.0.1', up_port))
        f = open(f'{prefix}-{n}.cap', 'wb'); n += 1
        def pump(src, dst, tag, f=f, c=c, u=u):
            while True:
                try:
                    d = src.recv(65536)
                except OSError:
                    d = b''
                if not d:
                    try: dst.shutdown(socket.SHUT_WR)
                    except OSError: pass
                    return
                with lock:
                    f.write(tag + struct.pack('>I', len(d)) + d); f.flush()
                dst.sendall(d)
        threading.Thread(target=pump, args=(c, u, b'C'), daemon=True).start()
        threading.Thread(target=pump, args=(u, c, b'S'), daemon=True).start()

def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', listen_port))
    clients = {}  # client addr -> (upstream sock, file)
    n = 0
    while True:
        socks = [s] + [v[0] for v in clients.values()]
        r, _, _ = select.select(socks, [], [])
        for sock in r:
            if sock is s:
                d, addr = s.recvfrom(65536)
                if addr not in clients:
                    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.connect(('127.0.0.1', up_port))
                    clients[addr] = (u, open(f'{prefix}-{n}.cap', 'wb')); n += 1
                u, f = clients[addr]
                f.write(b'C' + struct.pack('>I', len(d)) + d); f.flush(); u.send(d)
            else:
                for addr, (u, f) in clients.items():
                    if u is sock:
                        d = u.recv(65536)
                        f.write(b'S' + struct.pack('>I', len(d)) + d); f.flush(); s.sendto(d, addr)

tcp() if mode == 'tcp' else udp()
