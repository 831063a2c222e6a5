# State paths an operator may get wrong (issue 11, findings 2, 3, 5, 6, 11):
# a FIFO or a device at the path is logged and skipped, never waited on; two
# maps naming one file stop `nginx -t`; a relative path is relative to nginx's
# prefix (here html/, which the test runner cleans); temporary files of a killed save are removed at start; a file
# repeating a key counts it once.
# TEST 3 needs /dev writable by the workers' user, as state directories must
# be; it is skipped where /dev is read-only (buildah's chroot containers, in
# which `make test-docker` runs the suite here).

use Test::Nginx::Socket 'no_plan';
use File::Temp qw(tempdir);
use POSIX ();
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapState qw(state_file describe);

my $dir = $ENV{TEST_NGINX_STATE_DIR} = tempdir(CLEANUP => 1);

sub put_file {
    my ($name, $data) = @_;
    open my $f, '>', "$dir/$name" or die "$dir/$name: $!";
    binmode $f;
    print $f $data;
    close $f;
}

POSIX::mkfifo("$dir/fifo.state", 0600) or die "mkfifo: $!";
put_file('left.state', state_file(1, ['a', 1, 5, 0]));
put_file('left.state.99999999.tmp', 'a save killed midway');
put_file('left.state.1.tmp', 'a save by a live process');    # pid 1 lives
put_file('left.state.x.tmp', 'not a saver file');
put_file('twice.state', state_file(2, ['k', 1, 1, 0], ['other', 1, 7, 0], ['k', 1, 2, 0], ['k', 1, 3, 0]));

$ENV{TEST_NGINX_PREFIX} = server_root();

master_on();
workers(1);
no_shuffle();
timeout(10);
run_tests();

__DATA__

=== TEST 1: a FIFO at the state path is logged and skipped: nginx starts at once
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map f tinymap?space=64k&state=$TEST_NGINX_STATE_DIR/fifo.state;
--- config
location /incr { shared_map_key f $arg_k; return 200 "[$shared_map_incr]\n"; }
--- request
GET /incr?k=a
--- response_body
[1]
--- error_log eval
qr/\[error\] .*"[^"]*fifo\.state" is not a regular file, shared map "f" starts empty and does not save there/



=== TEST 2: ... and nothing is saved there: the FIFO stays a FIFO
--- init
sleep 2;
Test::More::ok(-p "$ENV{TEST_NGINX_STATE_DIR}/fifo.state", "the FIFO is still there");
--- request
GET /incr?k=a
--- response_body
[2]
--- error_log eval
qr/could not save state to "[^"]*fifo\.state": rename\(\) over "[^"]*fifo\.state" failed \(not a regular file\)/



=== TEST 3: a device at the state path is skipped too
--- skip_eval
3: !POSIX::access('/dev', POSIX::W_OK())
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map z tinymap?space=64k&state=/dev/zero;
--- config
location /incr { shared_map_key z $arg_k; return 200 "[$shared_map_incr]\n"; }
--- request
GET /incr?k=a
--- response_body
[1]
--- error_log
"/dev/zero" is not a regular file, shared map "z" starts empty



=== TEST 4: two maps naming one state file stop nginx -t
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map one tinymap?space=64k&state=$TEST_NGINX_STATE_DIR/same.state;
shared_map two hashmap?space=64k&state=$TEST_NGINX_STATE_DIR/./same.state;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*state file "[^"]*same\.state" is already used by shared_map "one"/



=== TEST 5: one relative state path and one absolute naming the same file stop nginx -t
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map one tinymap?space=64k&state=html/rel.state;
shared_map two tinymap?space=64k&state=$TEST_NGINX_PREFIX/html/rel.state;
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*state file "[^"]*rel\.state" is already used by shared_map "one"/



=== TEST 6: a relative state path is relative to nginx's prefix
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map r tinymap?space=64k&state=html/rel.state;
--- config
location /incr { shared_map_key r $arg_k; return 200 "[$shared_map_incr]\n"; }
location = /rel.state { root html; }
--- request eval
["GET /incr?k=a", "GET /incr?k=a"]
--- response_body eval
["[1]\n", "[2]\n"]



=== TEST 7: ... where the saver writes it, in the prefix
--- init
sleep 2;
--- request
GET /rel.state
--- response_body_filters eval
\&SharedMapState::describe
--- response_body
ok tinymap 1
a long 2 never



=== TEST 8: temporary files of saves killed midway are removed at start, others are kept
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map l tinymap?space=64k&state=$TEST_NGINX_STATE_DIR/left.state;
--- config
location /value { shared_map_key l $arg_k; return 200 "[$shared_map_value]\n"; }
location /state/ { alias $TEST_NGINX_STATE_DIR/; autoindex on; }
--- request
GET /value?k=a
--- response_body
[5]
--- error_log eval
qr/\[notice\] .*shared map: removed "[^"]*left\.state\.99999999\.tmp", left by a save that did not finish/



=== TEST 9: ... the live process's file and a file of another name stay
--- request
GET /state/
--- response_body_like eval
qr/^(?!.*99999999)(?=.*left\.state\.1\.tmp)(?=.*left\.state\.x\.tmp)/s



=== TEST 10: a state file holding a key three times loads and counts it once
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map t hashmap?space=64k&state=$TEST_NGINX_STATE_DIR/twice.state;
--- config
location /value { shared_map_key t $arg_k; return 200 "[$shared_map_value]\n"; }
--- request
GET /value?k=k
--- response_body
[3]
--- error_log
shared map "t": 2 records in "
twice.state" repeat a key of an earlier one; the last one is kept
shared map "t": loaded 2 entries from



=== TEST 11: ... and the other key is there too
--- request
GET /value?k=other
--- response_body
[7]
