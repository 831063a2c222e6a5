# The session store across requests: every worker sees the session, the upstream
# gets it in a header and writes it back, the API replaces it, and it ends.
# Every block checks that both workers see the session, so connections are spread
# over the workers with reuseport. The real Test::Nginx cannot combine
# TEST_NGINX_REUSE_PORT with its HUP mode (its own /ver server repeats the listen
# options, which nginx refuses), so under TEST_NGINX_USE_HUP the file is skipped,
# as lua-nginx-module skips its files that HUP mode cannot run.
our $SkipReason;
BEGIN {
    if ($ENV{TEST_NGINX_USE_HUP}) {
        $SkipReason = "needs TEST_NGINX_REUSE_PORT, which Test::Nginx's HUP mode cannot use";
    } else {
        $ENV{TEST_NGINX_REUSE_PORT} = 1;
    }
}

use Test::Nginx::Socket $SkipReason ? (skip_all => $SkipReason) : 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapTest;

workers(2);
master_on();
no_shuffle();

share_with_init(qw(call set_cookie new_sid is isnt ok like));

use_default_config(http_config => <<'_EOC_', config => <<'_EOC_');
    shared_map sessions hashmap?space=1m;

    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location /backend/ {
            return 200 "got: $http_x_session\n";
        }
        location = /backend/login {
            add_header X-Shared-Map-Session "user=$arg_user";
            return 200 "welcome $arg_user\n";
        }
        location = /backend/logout {
            add_header X-Shared-Map-Session-Destroy 1;
            return 200 "bye\n";
        }
        location = /backend/relogin {
            add_header X-Shared-Map-Session-Destroy 1;
            add_header X-Shared-Map-Session "user=$arg_user";
            return 200 "welcome again\n";
        }
    }
_EOC_
    shared_map_session sessions;

    location = /session {
        shared_map_session_api write;
    }
    location /app/ {
        proxy_set_header X-Session $shared_map_session;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/backend/;
    }
    location = /whoami {
        add_header X-Pid $pid;
        return 200 "$shared_map_session_id $shared_map_session";
    }
_EOC_

run_tests();

__DATA__

=== TEST 1: every worker sees the session the upstream created, and sends it upstream
--- init
my $r = call(GET => '/app/login?user=alice');
is $r->{content}, "welcome alice\n", 'login';
my $sid = new_sid($r) or die "no session cookie: " . set_cookie($r);
ok !exists $r->{headers}{'x-shared-map-session'}, 'the upstream header is hidden';
my %pids;
for (1 .. 40) {
    my $w = call(GET => '/whoami', $sid);
    $pids{ $w->{headers}{'x-pid'} }++;
    is $w->{content}, "$sid user=alice", "worker $w->{headers}{'x-pid'} sees the session" if $_ <= 4;
    is set_cookie($w), '', 'using a session sets no cookie' if $_ == 1;
    die "request $_: $w->{content}" if $w->{content} ne "$sid user=alice";
}
is scalar(keys %pids), 2, 'both workers answered: ' . join(',', keys %pids);
is call(GET => '/app/page', $sid)->{content}, "got: user=alice\n", 'the upstream gets the data';
--- request
GET /whoami
--- response_body_like: ^ $
--- no_error_log
[error]



=== TEST 2: writes through the API are seen at once by every worker
--- init
my $sid = new_sid(call(PUT => '/session', undef, 'n=0')) or die 'no session';
my %pids;
for my $n (1 .. 30) {
    my $p = call(PUT => '/session', $sid, "n=$n");
    die "PUT $n: $p->{status}" if $p->{status} != 204;
    my $w = call(GET => '/whoami', $sid);
    $pids{ $w->{headers}{'x-pid'} }++;
    die "after PUT $n: $w->{content}" if $w->{content} ne "$sid n=$n";
}
is scalar(keys %pids), 2, 'both workers read the writes';
my $g = call(GET => '/session', $sid);
is $g->{status}, 200, 'GET';
is $g->{content}, 'n=30', 'the data, exactly';
is $g->{headers}{'cache-control'}, 'no-store', 'not cached';
--- request
GET /whoami
--- response_body_like: ^ $



=== TEST 3: the upstream's data is replaced through the API, and the reverse
--- init
my $sid = new_sid(call(GET => '/app/login?user=alice')) or die 'no session';
my $p = call(PUT => '/session', $sid, 'user=bob');
is $p->{status}, 204, 'PUT on a live session replaces: 204';
is set_cookie($p), '', 'and sets no new cookie';
is call(GET => '/app/page', $sid)->{content}, "got: user=bob\n", 'the upstream gets the new data';
my $l = call(GET => '/app/login?user=carol', $sid);
my $new = new_sid($l);
ok $new && $new ne $sid, 'the upstream writing a live session gives it a new id';
is call(GET => '/session', $sid)->{status}, 404, 'the old id is dead';
is call(GET => '/session', $new)->{content}, 'user=carol', 'the API reads what the upstream wrote';
--- request
GET /whoami
--- response_body_like: ^ $



=== TEST 4: the upstream ends the session and the cookie expires
--- init
my $sid = new_sid(call(GET => '/app/login?user=alice')) or die 'no session';
my $r = call(GET => '/app/logout', $sid);
is $r->{content}, "bye\n", 'logout';
like set_cookie($r), qr/^SMSESSION=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:01 GMT; Path=\/; HttpOnly; SameSite=Lax$/,
    'the cookie is expired';
ok !exists $r->{headers}{'x-shared-map-session-destroy'}, 'the upstream header is hidden';
is call(GET => '/session', $sid)->{status}, 404, 'the session is gone';
is call(GET => '/app/page', $sid)->{content}, "got: \n", 'the upstream gets nothing';
--- request
GET /whoami
--- response_body_like: ^ $



=== TEST 5: DELETE ends the session
--- init
my $sid = new_sid(call(PUT => '/session', undef, 'x=1')) or die 'no session';
my $d = call(DELETE => '/session', $sid);
is $d->{status}, 204, 'DELETE';
like set_cookie($d), qr/^SMSESSION=; Max-Age=0;/, 'expires the cookie';
is call(GET => '/session', $sid)->{status}, 404, 'gone';
is call(DELETE => '/session', $sid)->{status}, 404, 'a second DELETE: 404';
my $p = call(PUT => '/session', $sid, 'x=2');
is $p->{status}, 201, 'a write after the end creates a session';
isnt new_sid($p), $sid, 'with a new id: an ended session is never revived';
--- request
GET /whoami
--- response_body_like: ^ $



=== TEST 6: destroy and write in one response renew the id (login after a session)
--- init
my $old = new_sid(call(PUT => '/session', undef, 'cart=3')) or die 'no session';
my $r = call(GET => '/app/relogin?user=alice', $old);
my $new = new_sid($r);
ok $new, 'a new cookie';
isnt $new, $old, 'with a new id';
is scalar(() = set_cookie($r) =~ /SMSESSION=/g), 1, 'one Set-Cookie only';
is call(GET => '/session', $old)->{status}, 404, 'the old id is dead';
is call(GET => '/session', $new)->{content}, 'user=alice', 'the new one holds the data';
--- request
GET /whoami
--- response_body_like: ^ $



=== TEST 7: a body kept in a temporary file is stored whole
--- init
my $data = join '', map { chr(32 + $_ % 90) } 1 .. 100_000;
my $p = call(PUT => '/session', undef, $data);
is $p->{status}, 201, 'PUT of 100000 bytes';
is call(GET => '/session', new_sid($p))->{content}, $data, 'read back exactly';
--- request
GET /whoami
--- response_body_like: ^ $
--- error_log
a client request body is buffered to a temporary file



=== TEST 8: data bigger than the map allows: 413, an [error] line, the data unchanged
--- http_config
    shared_map small tinymap?space=32k;
--- config
    shared_map_session small;
    location = /session {
        shared_map_session_api write;
    }
--- init
my $sid = new_sid(call(PUT => '/session', undef, 'small')) or die 'no session';
my $p = call(PUT => '/session', $sid, 'x' x 40000);
is $p->{status}, 413, 'PUT too large';
is $p->{content}, "session data is too large\n", 'says why';
is call(GET => '/session', $sid)->{content}, 'small', 'the previous data is unchanged';
is call(PUT => '/session', undef, 'y' x 40000)->{status}, 413, 'too large for a new session too';
--- request
GET /session
--- error_code: 404
--- error_log
shared map "small": session data of 40000 bytes is too large, the session is unchanged
