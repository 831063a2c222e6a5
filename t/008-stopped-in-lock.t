# A worker stopped while it holds a map's lock does not stop the others from
# counting into and reading present keys (issue 22): gdb attaches to one of two
# workers with a breakpoint on ngx_shmtx_unlock (a write done, the map's lock
# not yet released), clients add new keys until that worker stops there, and
# while it stays stopped the other worker must answer, at once, every way of
# counting into and reading a key that is already in the map:
# shared_map_count, $shared_map_incr, $shared_map_value, the API's
# GET ?key= and a session's lookup (shared_map_session_api, the session
# stored in the same map). Each answer says which worker gave it ($pid), so
# the probes retry on fresh connections until the running worker takes one,
# and each of its answers must come within PROMPT seconds and be right. Then gdb lets the
# stopped worker go on and everything it held completes.
#
# Only a lock-free path for present keys can pass: under the map's one lock
# the running worker waits for the stopped one: counting takes the engine's
# lock-free add, $shared_map_value and GET ?key= its lock-free read, a
# session its lock-free read and renewal. A probe that waits for the lock
# holds up the running worker until gdb lets the stopped one go, so only the
# first probe that fails tells which path still locks.
# Needs gdb and root (ptrace);
# skipped otherwise.

use Test::Nginx::Socket;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapTest;

our $Prompt = 0.5;

my $gdb = `command -v gdb 2>/dev/null`;
if (!$gdb || $> != 0) {
    plan(skip_all => 'needs gdb and root, to stop a worker at a breakpoint');
} else {
    plan('no_plan');
}

# The session id the probes send, made before anything is stopped.
our $Sid;

# One GET on a fresh connection: (status, body, pid of the worker, seconds).
# A path starting with /session sends the session cookie.
sub probe {
    my ($path) = @_;
    require HTTP::Tiny;
    require Time::HiRes;
    my $t0 = Time::HiRes::time();
    my %opt = $path =~ m{^/session} ? (headers => { Cookie => "SMSESSION=$Sid" }) : ();
    my $res = HTTP::Tiny->new(keep_alive => 0, timeout => 2)->get("http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}$path", \%opt);
    return ($res->{status}, $res->{content}, $res->{headers}{'x-pid'} // '', Time::HiRes::time() - $t0);
}

# Asks `path` until the worker other than `stopped` answers (at most `tries`
# fresh connections): its answer, with `secs` the time taken by every try. The
# stopped worker accepts no connection, so any wait is the running worker's.
sub from_running {
    my ($stopped, $path, $tries) = @_;
    my $t0 = Time::HiRes::time();
    for (1 .. $tries) {
        my @r = probe($path);
        return (@r[0 .. 2], Time::HiRes::time() - $t0) if $r[2] ne '' && $r[2] ne $stopped;
    }
    return;
}

sub run_stopped {
    require POSIX;
    require Time::HiRes;
    my $dir = server_root() . '/html';
    # Present keys: made before anything is stopped.
    for my $k (qw(a b c d)) {
        my ($s) = probe("/count?k=$k");
        die "count $k: $s" if $s != 200;
    }
    # A live session in the same map, written by a trusted caller.
    my $put = call('PUT', '/session-write', undef, 'user=alice');
    $Sid = new_sid($put) // die "session: $put->{status}";
    my @workers = worker_pids();
    die "expected 2 workers, found @workers" if @workers != 2;
    my $w = $workers[0];
    my $stopped_file = "$dir/stopped";
    my $go = "$dir/go";
    my $log = "$dir/gdb.log";
    my $gdb = fork // die "fork: $!";
    if (!$gdb) {
        open STDOUT, '>', $log;
        open STDERR, '>&', \*STDOUT;
        exec 'gdb', '-q', '-nx', '-batch', '--readnever', '-iex', 'set auto-load off', '-p', $w,
             '-ex', 'set pagination off', '-ex', 'break ngx_shmtx_unlock', '-ex', 'continue',
             '-ex', "shell touch $stopped_file; for i in \$(seq 200); do [ -e $go ] && break; sleep 0.05; done",
             '-ex', 'delete', '-ex', 'detach'
            or POSIX::_exit(127);
    }
    for (1 .. 400) {
        my $st = do { local (@ARGV, $/) = ("/proc/$w/status"); <> } // '';
        last if $st =~ /^TracerPid:\s*[1-9]/m && $st !~ /^State:\s*t/m;
        Time::HiRes::sleep(0.025);
    }
    # New keys, one at a time, until the traced worker stops inside the lock.
    # A new key takes the lock in any worker, so a request for one sent after
    # the stop would hold up the running worker too: once the traced worker
    # answered one (it counts in its log phase, after answering), it is bound
    # to stop, and no other is sent until gdb says it did, however slowly a
    # loaded machine runs gdb.
    for my $i (1 .. 300) {
        my (undef, undef, $pid) = probe("/count?k=new-$i");
        my $waits = $pid eq $w ? 300 : 3;
        for (1 .. $waits) { last if -e $stopped_file; Time::HiRes::sleep(0.03) }
        last if -e $stopped_file;
    }
    my $stopped = -e $stopped_file;
    Test::More::ok($stopped, "worker $w stopped holding a map's lock");
    my %got;
    if ($stopped) {
        # Past a tick of the workers' timer (1 s): the running worker's
        # periodic work (the sweep, the save check) meets the held lock too.
        Time::HiRes::sleep(1.5);
        # The running worker counts into a, b, c and reads d, each at once.
        # /count answers before its log phase counts: the second request
        # waits if the first one's count waited.
        for my $p (['count', '/count?k=a'], ['count2', '/count?k=a'], ['incr', '/incr?k=b'], ['value', '/value?k=c'],
                   ['api', '/api/c?key=d'], ['session', '/session']) {
            my ($name, $path) = @$p;
            my @r = from_running($w, $path, 12);
            $got{$name} = @r ? [@r] : undef;
        }
    }
    open my $touch, '>', $go;
    close $touch;
    waitpid $gdb, 0;
    my $out = `cat $log`;
    Test::More::like($out, qr/Breakpoint 1, .*ngx_shmtx_unlock/, 'gdb stopped the worker at ngx_shmtx_unlock')
        or Test::More::diag($out);
    for my $name (qw(count count2 incr value api session)) {
        my $r = $got{$name};
        Test::More::ok($r, "$name: the running worker answered") or next;
        my ($status, $body, $pid, $secs) = @$r;
        Test::More::is($status, 200, "$name: 200");
        Test::More::cmp_ok($secs, '<', $Prompt, "$name: answered within $Prompt s while the other worker holds the lock");
        Test::More::is($body, '2', "$name: b was counted once more") if $name eq 'incr';
        Test::More::is($body, '1', "$name: c read") if $name eq 'value';
        Test::More::is($body, '1', "$name: d read") if $name eq 'api';
        Test::More::is($body, 'user=alice', "$name: the session read") if $name eq 'session';
    }
    # Once the stopped worker went on, what it held completed: the map
    # still answers, and the new keys its clients added are there.
    my ($st) = probe('/value?k=new-1');
    Test::More::is($st, 200, 'the map answers after the stopped worker went on');
}

share_with_init(qw(probe from_running run_stopped call new_sid));

workers(2);
master_on();
no_shuffle();
timeout(30);
run_tests();

__DATA__

=== TEST 1: a worker stopped holding a map's lock; the other counts into and reads present keys at once
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map c tinymap?space=1m&entries=1024;
--- config
add_header X-Pid $pid always;
location = /count { shared_map_count c $arg_k; return 200 "ok\n"; }
location = /incr { shared_map_key c $arg_k; return 200 $shared_map_incr; }
location = /value { shared_map_key c $arg_k; return 200 $shared_map_value; }
location /api/ { shared_map_api; }
location = /session-write { shared_map_session c; shared_map_session_api write; }
location = /session { shared_map_session c; shared_map_session_api; }
--- init
run_stopped();
--- request
GET /value?k=b
--- response_body_like: ^[2-9]$
--- no_error_log
[crit]
