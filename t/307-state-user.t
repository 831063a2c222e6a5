# The workers' user must be able to write a state file's directory (issue 11,
# finding 4): otherwise every save fails and every write since the start is lost
# at the next restart. `nginx -t` and a start stop with [emerg] naming the path.
# Workers run as "nobody" here, as nginx's own default for a master run as root.
# A reload that adds such a map is refused, and the running nginx serves on
# (issue 20: the check used to run where nginx treats a failure as fatal, and
# the master exited, leaving its workers orphaned).

BEGIN { $ENV{TEST_NGINX_WORKER_USER} = 'nobody ' . (getgrnam('nogroup') ? 'nogroup' : 'nobody') }

use Test::Nginx::Socket;
use Test::More;
use File::Temp qw(tempdir);
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapTest;

if ($> != 0) {
    plan(skip_all => 'needs root, to run the workers as another user');
} else {
    plan('no_plan');
}

my $dir = tempdir(CLEANUP => 1);
chmod 0755, $dir;
mkdir "$dir/root-only", 0755 or die "mkdir: $!";
mkdir "$dir/shared", 0777 or die "mkdir: $!";
chmod 0777, "$dir/shared";
$ENV{TEST_NGINX_STATE_DIR} = $dir;

# Adds a map in the root-only directory to the running nginx's configuration
# and reloads it: the master must still be there afterwards.
sub reload_with_unwritable_map {
    require Time::HiRes;
    my $root = main::server_root();
    my $conf = "$root/conf/nginx.conf";
    my $text = do { local (@ARGV, $/) = ($conf); <> };
    $text =~ s{^(\s*shared_map c .*\n)}{$1    shared_map d tinymap?space=64k&state=$dir/root-only/d.state;\n}m
        or die "no map c in $conf";
    open my $out, '>', $conf or die "$conf: $!";
    print $out $text;
    close $out;
    my $master = master_pid("$root/logs/nginx.pid");
    kill 'HUP', $master or die "HUP: $!";
    Time::HiRes::sleep(1);
    my $state = do { local (@ARGV, $/) = ("/proc/$master/stat"); <> } // '';
    my ($s) = $state =~ /^\d+ \(.*\) (\S)/;
    Test::More::ok(defined $s && $s ne 'Z', 'the master is still running after the refused reload');
}
share_with_init(qw(reload_with_unwritable_map));

master_on();
workers(1);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: a state directory the workers' user cannot write stops nginx -t
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map c tinymap?space=64k&state=$TEST_NGINX_STATE_DIR/root-only/c.state;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*shared_map "c": the worker processes \(user "nobody"\) cannot write state files in "[^"]*root-only" \(13: Permission denied\), so "[^"]*root-only\/c\.state" would never be saved/



=== TEST 2: so does a state directory that does not exist
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map c tinymap?space=64k&state=$TEST_NGINX_STATE_DIR/missing/c.state;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*cannot write state files in "[^"]*missing" \(2: No such file or directory\)/



=== TEST 3: a directory the workers can write is accepted, and saves land there
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map c tinymap?space=64k&state=$TEST_NGINX_STATE_DIR/shared/c.state;
--- config
location /incr { shared_map_key c $arg_k; return 200 "[$shared_map_incr]\n"; }
--- request
GET /incr?k=a
--- response_body
[1]
--- no_error_log
[emerg]
[error]



=== TEST 4: ... within about a second
--- init
sleep 2;
Test::More::ok(-s "$ENV{TEST_NGINX_STATE_DIR}/shared/c.state", "the state file was saved by a worker");
--- request
GET /incr?k=a
--- response_body
[2]
--- no_error_log
[error]



=== TEST 5: a reload that adds a map in a directory the workers cannot write is refused; nginx serves on
--- init
reload_with_unwritable_map();
--- request
GET /incr?k=a
--- response_body
[3]
--- error_log eval
qr/\[emerg\] .*shared_map "d": the worker processes \(user "nobody"\) cannot write state files in "[^"]*root-only" \(13: Permission denied\)/
