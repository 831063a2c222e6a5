# One nginx per state file (issue 20, finding 7). Two nginx instances naming
# one state file used to lose data silently: each saved its own map over the
# other's. Now the master of the first holds a lock on STATE.lock for as long
# as a map names STATE: a second nginx (another prefix, its own pid file)
# refuses to start with [emerg] naming the file, and so does its `nginx -t`;
# the first's own `nginx -t` and reloads pass and it keeps counting; a reload
# that adds a map whose file another nginx holds is refused (the running
# configuration keeps serving), one that removes a map releases its file; once
# the first stops, the second starts and finds every count; a master killed
# with SIGKILL leaves the file to its orphaned workers (they still serve and
# save) until they are gone, and nothing stale after them. The state
# directory is the one docs/persistence.md asks for: owned by the workers' user ("nobody"), mode 0700.
# The second nginx listens on TEST_NGINX_SERVER_PORT + 1.

BEGIN { $ENV{TEST_NGINX_WORKER_USER} = 'nobody ' . (getgrnam('nogroup') ? 'nogroup' : 'nobody') }

use Test::Nginx::Socket;
use Test::More;
use File::Temp qw(tempdir);
use HTTP::Tiny;
use Time::HiRes ();
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapTest;

if ($> != 0) {
    plan(skip_all => 'needs root, to run the workers as another user');
} else {
    plan('no_plan');
}

my $dir = $ENV{TEST_NGINX_STATE_DIR} = tempdir(CLEANUP => 1);
chmod 0755, $dir;
$dir = "$dir/state";
mkdir $dir or die "mkdir: $!";
chown scalar(getpwnam('nobody')), -1, $dir or die "chown: $!";
chmod 0700, $dir;
$ENV{TEST_NGINX_STATE_DIR} = $dir;
our $Other = tempdir(CLEANUP => 1);
chmod 0755, $Other;
my $other = $Other;
mkdir "$other/$_" for qw(conf logs);
my $other_port = $ENV{TEST_NGINX_SERVER_PORT} + 1;
my $user = $ENV{TEST_NGINX_WORKER_USER};

# A process that exited: gone, or a zombie nobody reaps (a daemon's parent
# may be a container's init that does not).
sub gone {
    my ($pid) = @_;
    return 1 if !kill 0, $pid;
    my $stat = do { local (@ARGV, $/) = ("/proc/$pid/stat"); <> } // '';
    return $stat =~ /^\d+ \(.*\) Z/;
}

sub wait_gone {
    my ($pid) = @_;
    for (1 .. 200) {
        return 1 if gone($pid);
        waitpid $pid, 1;
        Time::HiRes::sleep(0.05);
    }
    return 0;
}


# The other nginx, with maps MAP => STATE FILE (in the state directory, or
# as written after a "=": a path of its own).
sub other_conf {
    my (%maps) = @_;
    my $path = sub { $_[0] =~ /^=(.*)/ ? $1 : "$dir/$_[0]" };
    my $maps = join '', map { "    shared_map $_ tinymap?space=64k&state=" . $path->($maps{$_}) . ";\n" } sort keys %maps;
    my ($first) = sort keys %maps;
    open my $f, '>', "$other/conf/nginx.conf" or die "$!";
    print $f <<"_EOC_";
load_module $ENV{TEST_NGINX_MODULE};
user $user;
worker_processes 1;
error_log logs/error.log;
pid logs/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
$maps    server {
        listen 127.0.0.1:$other_port;
        location /incr { shared_map_key $first \$arg_k; return 200 "[\$shared_map_incr]\\n"; }
        location /value { shared_map_key $first \$arg_k; return 200 "[\$shared_map_value]\\n"; }
    }
}
_EOC_
    close $f;
}

# Runs the nginx binary on the other prefix (or on this test's, with `mine`):
# its exit status and what it printed.
sub run_nginx {
    my ($which, @args) = @_;
    my $root = $which eq 'mine' ? main::server_root() : $other;
    my $out = `$ENV{TEST_NGINX_BINARY} -p $root/ -c $root/conf/nginx.conf @args 2>&1`;
    return ($? >> 8, $out);
}

sub other_start {
    other_conf(@_);
    return run_nginx('other');
}

sub other_stop {
    my $pid = master_pid("$other/logs/nginx.pid") or return;
    kill 'QUIT', $pid;
    wait_gone($pid) or die "the other nginx ($pid) did not stop";
}

sub other_get {
    my ($path) = @_;
    return HTTP::Tiny->new(keep_alive => 0)->get("http://127.0.0.1:$other_port$path")->{content};
}

# The children of process PID.

sub my_pid { master_pid() }

# Reloads this test's nginx and waits for the new workers (and the old ones to go).
sub reload {
    my $master = my_pid();
    kill 'HUP', $master or die "HUP: $!";
    Time::HiRes::sleep(1.2);
}

# Edits this test's nginx.conf: CODE gets the text in $_.
sub edit_my_conf {
    my ($code) = @_;
    my $conf = main::server_root() . '/conf/nginx.conf';
    local $_ = do { local (@ARGV, $/) = ($conf); <> };
    $code->();
    open my $f, '>', $conf or die "$conf: $!";
    print $f $_;
    close $f;
}

sub refused_like {
    my ($rc, $out, $map, $file, $holder, $what) = @_;
    isnt($rc, 0, "$what: exits with a failure");
    like($out, qr/\[emerg\] .*shared_map "$map": state file "\Q$dir\E\/\Q$file\E" is already used by another nginx \(pid file "\Q$holder\E"\)/,
         "$what: [emerg] names the state file and the nginx holding it");
}

# The other nginx never outlives the test, whatever failed.
my $test_pid = $$;
END { other_stop() if $$ == $test_pid }

{
    no strict 'refs';
    for my $pkg (qw(Test::Nginx::Util Test::Nginx::Socket)) {
        *{"${pkg}::$_"} = \&{"main::$_"}
            for qw(other_start other_stop other_get run_nginx my_pid reload edit_my_conf refused_like wait_gone
                    master_pid worker_pids);
    }
}

master_on();
workers(1);
no_shuffle();
timeout(10);
run_tests();

__DATA__

=== TEST 1: the first nginx counts into its state file
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map c tinymap?space=64k&state=$TEST_NGINX_STATE_DIR/c.state;
--- config
location /incr { shared_map_key c $arg_k; return 200 "[$shared_map_incr]\n"; }
location /value { shared_map_key c $arg_k; return 200 "[$shared_map_value]\n"; }
--- request eval
["GET /incr?k=p", "GET /incr?k=p", "GET /incr?k=p"]
--- response_body eval
["[1]\n", "[2]\n", "[3]\n"]
--- no_error_log
[emerg]



=== TEST 2: ... a second nginx naming the same state file refuses to start, [emerg] naming the file
--- init
# The same file named another way: through "..", and relative to the other
# prefix through a link to the state directory.
my ($rc, $out) = other_start(c => '../state/c.state');
refused_like($rc, $out, 'c', '../state/c.state', main::server_root() . '/logs/nginx.pid', 'a start naming it through ".."');
symlink($ENV{TEST_NGINX_STATE_DIR}, "$main::Other/st") or die "symlink: $!";
($rc, $out) = other_start(c => '=st/c.state');
Test::More::isnt($rc, 0, 'a start naming it relative to its prefix, through a link: exits with a failure');
Test::More::like($out, qr/\[emerg\] .*state file "\Q$main::Other\E\/st\/c\.state" is already used by another nginx/,
                 '... [emerg] names the file as that nginx knows it');
($rc, $out) = other_start(c => 'c.state');
refused_like($rc, $out, 'c', 'c.state', main::server_root() . '/logs/nginx.pid', 'the second start');
Test::More::ok(!-e "$main::Other/logs/nginx.pid", 'the second nginx is not running');
--- request
GET /incr?k=p
--- response_body
[4]



=== TEST 3: ... the first's own nginx -t passes, the second's does not
--- init
my ($rc, $out) = run_nginx('mine', '-t');
Test::More::is($rc, 0, "the running nginx's own configuration test passes");
Test::More::like($out, qr/test is successful/, '... and says so');
($rc, $out) = run_nginx('other', '-t');
refused_like($rc, $out, 'c', 'c.state', main::server_root() . '/logs/nginx.pid', "the second's test");
--- request
GET /incr?k=p
--- response_body
[5]



=== TEST 4: ... a reload (HUP) of the first keeps the file and the counts; the second is still refused
--- init
reload();
my ($rc, $out) = other_start(c => 'c.state');
refused_like($rc, $out, 'c', 'c.state', main::server_root() . '/logs/nginx.pid', 'a start after the reload');
--- request eval
["GET /incr?k=p", "GET /value?k=p"]
--- response_body eval
["[6]\n", "[6]\n"]



=== TEST 5: a binary upgrade (USR2) passes: the new master adopts the lock, the second nginx is still refused
--- init
my $old = my_pid();
my $pidfile = main::server_root() . '/logs/nginx.pid';
Time::HiRes::sleep(1.2);    # the map is saved: the new master loads it whole
kill 'USR2', $old or die "USR2: $!";
my $new;
for (1 .. 100) {
    $new = my_pid();
    last if -e "$pidfile.oldbin" && $new && $new != $old;
    Time::HiRes::sleep(0.05);
}
Test::More::ok($new && $new != $old && kill(0, $new), 'the new binary runs as the master');
Time::HiRes::sleep(0.5);
kill 'QUIT', $old;
wait_gone($old) or die "the old master ($old) did not stop";
my ($rc, $out) = other_start(c => 'c.state');
refused_like($rc, $out, 'c', 'c.state', $pidfile, 'a start after the upgrade');
--- request eval
["GET /incr?k=p", "GET /value?k=p"]
--- response_body eval
["[7]\n", "[7]\n"]



=== TEST 6: a reload that adds a map whose state file another nginx holds is refused; the running configuration keeps serving
--- init
my ($rc, $out) = other_start(e => 'e.state');
Test::More::is($rc, 0, 'another nginx with another state file starts') or Test::More::diag($out);
edit_my_conf(sub {
    s{^(\s*shared_map c .*\n)}{$1    shared_map d tinymap?space=64k&state=$ENV{TEST_NGINX_STATE_DIR}/d.state;\n    shared_map e tinymap?space=64k&state=$ENV{TEST_NGINX_STATE_DIR}/e.state;\n}m
        or die "no map c";
});
reload();
Test::More::is(other_get('/incr?k=o'), "[1]\n", 'the other nginx counts');
other_stop();
# Map d's file was free, and the refused reload took it before it met e's:
# the lock goes with the refused configuration.
($rc, $out) = other_start(d => 'd.state');
Test::More::is($rc, 0, 'a refused reload leaves no lock on the files of the maps it added') or Test::More::diag($out);
other_stop();
--- request
GET /incr?k=p
--- response_body
[8]
--- error_log eval
qr/\[emerg\] .*shared_map "e": state file "[^"]*\/e\.state" is already used by another nginx \(pid file "[^"]*\/logs\/nginx\.pid"\)/



=== TEST 7: ... once the other nginx stops, the same reload takes the files
--- init
# The refusal above was expected: later blocks do not warn about it.
truncate main::server_root() . '/logs/error.log', 0;
reload();
my $pidfile = main::server_root() . '/logs/nginx.pid';
my ($rc, $out) = other_start(e => 'e.state');
refused_like($rc, $out, 'e', 'e.state', $pidfile, 'the other start on e, after the reload');
($rc, $out) = other_start(d => 'd.state');
refused_like($rc, $out, 'd', 'd.state', $pidfile, 'the other start on d, after the reload');
--- request
GET /incr?k=p
--- response_body
[9]



=== TEST 8: a reload that removes a map releases its state file
--- init
edit_my_conf(sub { s{^\s*shared_map [de] .*\n}{}mg or die "no maps d and e" });
reload();
my ($rc, $out) = other_start(e => 'e.state');
Test::More::is($rc, 0, 'the other nginx starts on the released file') or Test::More::diag($out);
Test::More::is(other_get('/value?k=o'), "[1]\n", '... and finds what it saved there');
other_stop();
--- request
GET /incr?k=p
--- response_body
[10]



=== TEST 9: after the first nginx stops, the second starts on its file, finds its counts and saves its own for it
--- init
my $master = my_pid();
kill 'QUIT', $master;
wait_gone($master) or die "nginx ($master) did not stop";
my ($rc, $out) = other_start(c => 'c.state');
Test::More::is($rc, 0, 'the second nginx starts once the first has stopped') or Test::More::diag($out);
Test::More::is(other_get('/value?k=p'), "[10]\n", "it finds the first's counts");
Test::More::is(other_get("/incr?k=q"), "[$_]\n", "it counts ($_)") for 1 .. 5;
other_stop();
($rc, $out) = run_nginx('mine');
Test::More::is($rc, 0, 'the first nginx starts again') or Test::More::diag($out);
--- request eval
["GET /value?k=q", "GET /value?k=p"]
--- response_body eval
["[5]\n", "[10]\n"]



=== TEST 10: a master killed with SIGKILL: its orphaned workers, still serving and saving, keep the file; once they are gone, so is the lock
--- init
my $master = my_pid();
my @workers = worker_pids($master);
Test::More::ok(scalar @workers, 'the master has workers');
kill 'KILL', $master;
wait_gone($master) or die "nginx ($master) did not die";
my ($rc, $out) = other_start(c => 'c.state');
refused_like($rc, $out, 'c', 'c.state', main::server_root() . '/logs/nginx.pid', 'a start while the orphans live');
kill 'TERM', @workers;
wait_gone($_) or die "worker $_ did not stop" for @workers;
($rc, $out) = other_start(c => 'c.state');
Test::More::is($rc, 0, 'the second nginx starts once they are gone') or Test::More::diag($out);
Test::More::is(other_get('/value?k=q'), "[5]\n", '... and finds the counts the orphans saved');
other_stop();
unlink main::server_root() . '/logs/nginx.pid';
($rc, $out) = run_nginx('mine');
Test::More::is($rc, 0, 'the first nginx starts again') or Test::More::diag($out);
--- request
GET /value?k=q
--- response_body
[5]
