# Saves never write through a symbolic link planted in the state directory
# (issue 20, finding 5). The directory here is world-writable, as the README
# once told operators to make it (docs/persistence.md now says never to), and
# the workers run as "nobody": another user may plant links there. A link at the
# name a save would use is never written through (the temporary file is created
# with O_CREAT|O_EXCL|O_NOFOLLOW under an unpredictable name), a link at the
# state path is neither read at start nor written through (the save's rename
# replaces the link itself), and the start-up cleanup of leftover temporary
# files follows no link either.

BEGIN { $ENV{TEST_NGINX_WORKER_USER} = 'nobody ' . (getgrnam('nogroup') ? 'nogroup' : 'nobody') }

use Test::Nginx::Socket;
use Test::More;
use File::Temp qw(tempdir);
use HTTP::Tiny;
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapState qw(state_file describe);

if ($> != 0) {
    plan(skip_all => 'needs root, to run the workers as another user');
} else {
    plan('no_plan');
}

my $dir = $ENV{TEST_NGINX_STATE_DIR} = tempdir(CLEANUP => 1);
chmod 0777, $dir;
mkdir "$dir/elsewhere", 0777 or die "mkdir: $!";
chmod 0777, "$dir/elsewhere";

sub put_file {
    my ($path, $data, $mode) = @_;
    open my $f, '>', $path or die "$path: $!";
    binmode $f;
    print $f $data;
    close $f;
    chmod $mode, $path if defined $mode;
}

sub slurp {
    my ($path) = @_;
    open my $f, '<', $path or return undef;
    binmode $f;
    local $/;
    return scalar <$f>;
}

# The pid of the (one) worker, as a planting user would find it with ps.
sub worker_pid {
    my $r = HTTP::Tiny->new(keep_alive => 0)->get("http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}/pid");
    die "GET /pid: $r->{status}" if $r->{status} != 200;
    return $r->{content};
}

# Another user plants links where the saver of map "s" would write: at the
# temporary name today's saves use (STATE.PID.tmp, with the worker's pid)
# and at the state path's own name of a second map "t". Their targets do not
# exist yet, or hold a file of the planting user's.
sub plant_links {
    my $pid = worker_pid();
    symlink("$dir/elsewhere/created", "$dir/s.state.$pid.tmp") or die "symlink: $!";
    put_file("$dir/elsewhere/victim", "precious\n", 0666);
    symlink("$dir/elsewhere/victim", "$dir/s.state.$pid.0000000000000000.tmp") or die "symlink: $!";
}

# After the saves: no target was created or changed, and the state file is a
# regular file holding the map.
sub check_targets {
    sleep 2;
    ok(!-e "$dir/elsewhere/created", 'the link planted at the temporary name made no file');
    is(slurp("$dir/elsewhere/victim"), "precious\n", 'a file a planted link points to is unchanged');
    ok(-f "$dir/s.state" && !-l "$dir/s.state", 'the state file is a regular file, not a planted link');
    is(describe(slurp("$dir/s.state") // ''), "ok tinymap 1\na long 3 never\n", 'the state file holds the map');
    my @tmp = grep { -f $_ && !-l $_ } glob "$dir/s.state.*.tmp";
    is("@tmp", '', 'no temporary file is left behind');
}

# A link at the state path, to a valid state file elsewhere: the root master
# would read it at start, and the old saver would replace the link by the map.
put_file("$dir/elsewhere/other.state", state_file(1, ['secret', 1, 42, 0]), 0644);
symlink("$dir/elsewhere/other.state", "$dir/linked.state") or die "symlink: $!";

# Leftovers of killed saves, with today's names: a regular file of a dead
# process is removed; a link of that name is not followed, its target stays.
put_file("$dir/left.state.99999999.0123456789abcdef.tmp", 'a save killed midway');
put_file("$dir/elsewhere/kept", "kept\n", 0644);
symlink("$dir/elsewhere/kept", "$dir/left.state.99999998.fedcba9876543210.tmp") or die "symlink: $!";

{
    no strict 'refs';
    for my $pkg (qw(Test::Nginx::Util Test::Nginx::Socket)) {
        *{"${pkg}::$_"} = \&{"main::$_"} for qw(plant_links check_targets slurp);
    }
}

master_on();
workers(1);
no_shuffle();
timeout(10);
run_tests();

__DATA__

=== TEST 1: the worker's pid, which a planting user can see
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map s tinymap?space=64k&state=$TEST_NGINX_STATE_DIR/s.state;
--- config
location /pid { return 200 $pid; }
location /incr { shared_map_key s $arg_k; return 200 "[$shared_map_incr]\n"; }
--- request
GET /pid
--- response_body_like: ^\d+$



=== TEST 2: ... links planted at the names a save could use are not written through
--- init
plant_links();
--- request eval
["GET /incr?k=a", "GET /incr?k=a", "GET /incr?k=a"]
--- response_body eval
["[1]\n", "[2]\n", "[3]\n"]



=== TEST 3: ... no target was created or changed, and the state file is a regular file with the map
--- init
check_targets();
--- request
GET /incr?k=b
--- response_body
[1]
--- no_error_log
[error]
[crit]
[alert]



=== TEST 4: a symbolic link at the state path is not followed when the map is loaded
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map l tinymap?space=64k&state=$TEST_NGINX_STATE_DIR/linked.state;
--- config
location /incr { shared_map_key l $arg_k; return 200 "[$shared_map_incr]\n"; }
location /value { shared_map_key l $arg_k; return 200 "[$shared_map_value]\n"; }
--- request
GET /value?k=secret
--- response_body
[]
--- error_log eval
qr/\[error\] .*"[^"]*linked\.state" is a symbolic link, which is not followed: shared map "l" starts empty and its saves replace the link/



=== TEST 5: ... and the save replaces the link itself: its target is unchanged
--- init
sleep 2;
--- request
GET /incr?k=c
--- response_body
[1]



=== TEST 6: ... the state path is now a regular file with the map, the link's target as it was
--- init
sleep 2;
Test::More::ok(-f "$ENV{TEST_NGINX_STATE_DIR}/linked.state" && !-l "$ENV{TEST_NGINX_STATE_DIR}/linked.state",
               'the link at the state path was replaced by a regular file');
Test::More::is(SharedMapState::describe(slurp("$ENV{TEST_NGINX_STATE_DIR}/linked.state") // ''),
               "ok tinymap 1\nc long 1 never\n", 'the state file holds the map');
Test::More::is(SharedMapState::describe(slurp("$ENV{TEST_NGINX_STATE_DIR}/elsewhere/other.state") // ''),
               "ok tinymap 1\nsecret long 42 never\n", "the link's target is unchanged");
--- request
GET /value?k=c
--- response_body
[1]



=== TEST 7: temporary files of saves killed midway, with random names, are removed at start
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map m tinymap?space=64k&state=$TEST_NGINX_STATE_DIR/left.state;
--- config
location /value { shared_map_key m $arg_k; return 200 "[$shared_map_value]\n"; }
--- request
GET /value?k=a
--- response_body
[]
--- error_log eval
qr/\[notice\] .*shared map: removed "[^"]*left\.state\.99999999\.0123456789abcdef\.tmp", left by a save that did not finish/



=== TEST 8: ... a link with such a name is not followed: its target stays
--- init
Test::More::ok(!-e "$ENV{TEST_NGINX_STATE_DIR}/left.state.99999999.0123456789abcdef.tmp", 'the leftover is gone');
Test::More::is(slurp("$ENV{TEST_NGINX_STATE_DIR}/elsewhere/kept"), "kept\n", "the planted link's target is still there");
--- request
GET /value?k=a
--- response_body
[]
