# Requests that used to do damage (issue 11): a write that can never fit
# evicted the whole map before it was refused (finding 1); a huge body was
# copied into memory sized from the body before it was checked against the
# map, and a failed allocation aborted the worker (finding 9).

use Test::Nginx::Socket 'no_plan';
use File::Temp qw(tempdir);
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapState qw(state_file);
use SharedMapTest;

my $dir = $ENV{TEST_NGINX_STATE_DIR} = tempdir(CLEANUP => 1);
{
    open my $f, '>', "$dir/full.state" or die "$!";
    binmode $f;
    print $f state_file(2, map { ["k$_", 2, 'v' x 100, 0] } 1 .. 300);
    close $f;
}

# Limits each worker's address space to what it uses now and 32 MiB more, so
# that copying a 64 MiB body would fail to allocate.
sub limit_workers {
    for my $pid (worker_pids()) {
        open my $f, '<', "/proc/$pid/status" or die "$pid: $!";
        my ($vm) = do { local $/; <$f> } =~ /^VmSize:\s*(\d+) kB/m;
        my $limit = ($vm + 32 * 1024) * 1024;
        system('prlimit', "--pid=$pid", "--as=$limit:$limit") == 0 or die "prlimit failed";
    }
}

master_on();
workers(1);
no_shuffle();
no_long_string();
share_with_init(qw(worker_pids limit_workers));
run_tests();

__DATA__

=== TEST 1: a value that can never fit in the space is refused with 413 before anything is evicted
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map m hashmap?space=1m&evict&state=$TEST_NGINX_STATE_DIR/full.state;
--- config
location /api/ { shared_map_api; }
--- request eval
"PUT /api/m?key=big\n" . ('x' x 1048575)
--- error_code: 413
--- response_body
value too large
--- error_log
shared map "m": loaded 300 entries



=== TEST 2: ... and all 300 entries are still there, none evicted
--- request
GET /api/m?limit=0
--- response_body_like eval
qr/"entries":300,.*"evictions":0,/



=== TEST 3: with client_max_body_size 0, a 64 MiB body is refused without being copied: the worker lives
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map m hashmap?space=1m;
shared_map sessions hashmap?space=64k;
shared_map_session sessions;
--- config
location /api/ { client_max_body_size 0; shared_map_api; }
location = /session { client_max_body_size 0; shared_map_session_api write; }
location = /pid { return 200 $pid; }
--- init
use HTTP::Tiny;
my @before = worker_pids();
limit_workers();
my $http = HTTP::Tiny->new(keep_alive => 0, timeout => 30);
my $base = "http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}";
my $body = 'x' x (64 << 20);
my $r = $http->put("$base/api/m?key=huge", { content => $body });
Test::More::is($r->{status}, 413, 'the API refuses a 64 MiB value in a 1 MiB map');
$r = $http->put("$base/session", { content => $body });
Test::More::is($r->{status}, 413, 'the session API refuses 64 MiB of session data');
Test::More::is(join(',', worker_pids()), join(',', @before), 'the same worker serves on');
--- request
PUT /api/m?key=small
hello
--- error_code: 201
--- no_error_log
exited on signal
[alert]
