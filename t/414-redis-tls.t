# Replication through a TLS-only redis-server with an ACL user, as managed
# Redis services run it: a CA and certificates made by openssl here; three
# hosts converging (counters, strings, removals); the TLS session reused on
# reconnecting; a wrong CA, a wrong name and a wrong password refused, with
# the hosts counting locally and fast; no password anywhere in the output.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapHosts;

if (!redis_bin() || `redis-server --help 2>&1; redis-server --tls-port 0 --test-memory 0 2>&1` !~ /tls|memory/i) {
    plan skip_all => 'redis-server is not installed (apt-get install redis-server)' unless $ENV{CI};
    fail('redis-server is installed');
    done_testing();
    exit;
}

my $root = setup('redis-tls');
my $tls = make_certs();
my $rport = redis_port();
my $password = 'Pw-5ecr3t-414';
my $wrong = 'Wr0ng-pw-414';

# Redis refuses whoever is not the user `app`: the default user is off.
start_redis(
    tls  => $tls,
    args => ['--user', 'default', 'off', '--user', 'app', 'on', ">$password", '~*', '&*', '+@all'],
    cli  => ['--user', 'app', '--pass', $password, '--no-auth-warning'],
);
is(redis_cli('ping'), 'PONG', 'redis-server speaks TLS only, to the user app');

# The configuration refuses what cannot be secure or cannot authenticate.
like(nginx_t("shared_map_redis 127.0.0.1:$rport tls;"),
    qr/\[emerg\] no "tls_trusted_certificate=" to verify Redis's certificate against/,
    'tls verifies by default: nginx -t asks for tls_trusted_certificate');
like(nginx_t("shared_map_redis 127.0.0.1:$rport user=app;"),
    qr/\[emerg\] "user=" requires "password="/, 'user= without password= is refused');
like(nginx_t("shared_map_redis 127.0.0.1:$rport tls_server_name=redis.test;"),
    qr/\[emerg\] "tls_server_name=" requires "tls"/, 'a tls_ parameter without tls is refused');
like(nginx_t("shared_map_redis 127.0.0.1:$rport tls tls_trusted_certificate=$tls/none.pem;"),
    qr/\[emerg\] cannot load tls_trusted_certificate/, 'a CA file that does not exist is refused');
like(nginx_t("shared_map_redis 127.0.0.1:$rport tls tls_verify=off;"),
    qr/test is successful/, 'tls_verify=off needs no CA');
my $refused = nginx_t("shared_map_redis 127.0.0.1:$rport password=$password password=$wrong;");
like($refused, qr/duplicate parameter "password"/, 'a duplicate password is refused');
unlike($refused, qr/\Q$password\E|\Q$wrong\E/, 'and its refusal does not quote it');

sub conf {
    my (%o) = @_;
    my $ca = $o{ca} // "$tls/ca.pem";
    my $name = $o{name} // 'redis.test';
    my $pw = $o{password} // $password;
    return <<"_EOC_";
    shared_map_redis 127.0.0.1:$rport user=app password=$pw prefix=t414
                     tls tls_trusted_certificate=$ca tls_server_name=$name;
    shared_map c tinymap?space=1m&entries=1000&sync;
    shared_map s hashmap?space=1m&entries=1000&sync;
_EOC_
}
my $hit = '        location = /hit { shared_map_key c $arg_k; return 200 "$shared_map_incr"; }';
start_host($_, conf(), $hit) for 1 .. 3;

# Counters: 3 hosts x 50 increments of the same key, interleaved.
for my $i (1 .. 50) {
    for my $h (1 .. 3) { http_get($h, '/hit?k=shared') }
}
ok(defined converge('c', 'shared', '150', 10, [1 .. 3]), 'three hosts converge to the exact sum through TLS')
    or diag values_of('c', 'shared', [1 .. 3]);
is(put(1, 's', 'greeting', 'hello over tls'), 201, 'a string written on host 1');
ok(defined converge('s', 'greeting', 'hello over tls', 10, [1 .. 3]), 'reaches every host')
    or diag values_of('s', 'greeting', [1 .. 3]);
is(del(2, 's', 'greeting'), 204, 'removed on host 2');
ok(defined converge('s', 'greeting', undef, 10, [1 .. 3]), 'gone from every host')
    or diag values_of('s', 'greeting', [1 .. 3]);
like(redis_cli('HGET', 't414:c', 'shared'), qr/^150$/, 'Redis holds the sum, written by user app');
like(sync_of(1, 'c'), qr/"connected":true/, 'the statistics say connected');

# A reconnection resumes the TLS session of the last connection.
like(redis_cli('CLIENT', 'KILL', 'TYPE', 'normal'), qr/^[1-9]/, 'Redis drops the hosts');
my $t0 = time;
sleep 0.1 until error_log(1) =~ /TLS session reused/ || time - $t0 > 10;
like(error_log(1), qr/\[info\] .*shared map: Redis: TLS session reused/, 'host 1 reconnects reusing its TLS session');
http_get(3, '/hit?k=shared') for 1 .. 5;
ok(defined converge('c', 'shared', '155', 10, [1 .. 3]), 'and replication goes on') or diag values_of('c', 'shared', [1 .. 3]);

# Refused: a CA that did not sign Redis's certificate, a name the certificate
# does not carry, a password that is not the user's.
start_host(4, conf(ca => "$tls/other-ca.pem"), $hit);
start_host(5, conf(name => 'other.test'), $hit);
start_host(6, conf(password => $wrong), $hit);
my $t = time;
my @counts = map { (split / /, http_get(4, '/hit?k=alone'))[1] } 1 .. 200;
my $elapsed = time - $t;
is("@counts[0, 199]", '1 200', 'a host refusing Redis\'s certificate counts locally');
cmp_ok($elapsed, '<', 2, 'and fast: 200 requests in under 2 s') or diag $elapsed;
sleep 1.5;
like(sync_of(4, 'c'), qr/"connected":false.*"last_error":"TLS certificate verify error: \(\d+:[^"]+\)"/,
    'its statistics give the reason');
like(error_log(4), qr/\[error\] .*shared map: Redis: TLS certificate verify error: \(\d+:/, 'so does its error log');
my $lines = () = error_log(4) =~ /certificate verify error/g;
is($lines, 1, 'once, though it retried') or diag error_log(4);
like(sync_of(5, 'c'), qr/"last_error":"TLS certificate does not match \\"other.test\\""/,
    'a name the certificate does not carry is refused');
like(sync_of(6, 'c'), qr/"last_error":"WRONGPASS[^"]*"/, 'a wrong password: WRONGPASS in the statistics');
is(values_of('c', 'shared', [4, 5, 6]), 'none,none,none', 'nothing from Redis reached the refused hosts');
is(redis_cli('HGET', 't414:c', 'alone'), '', 'nor did their counts reach Redis');

# No password in any output of any host.
my $output = '';
for my $h (1 .. 6) {
    $output .= error_log($h);
    $output .= http_get($h, $_) for '/maps/', '/maps/c', '/maps/c?limit=0', '/maps/c?format=prometheus',
        '/maps/s?format=prometheus', '/maps/?format=html';
}
like($output, qr/shared_map_c|"sync"/, 'the statistics were read');
unlike($output, qr/\Q$password\E/, 'the password appears in no log, JSON, Prometheus or dashboard output');
unlike($output, qr/\Q$wrong\E/, 'nor does a wrong one');

my $alerts = `grep -h -E '\\[(alert|emerg)\\]' $root/h*/logs/error.log`;
is($alerts, '', 'no alert in the error logs');

stop_host($_) for 1 .. 6;
kill_redis();
done_testing();
