# The session store against a hostile client: each block closes one way of
# getting or spoiling someone else's session (issue 10's findings).
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapTest;
use IO::Socket::UNIX;
use POSIX ();

no_shuffle();
$ENV{TEST_NGINX_HTML_DIR} ||= html_dir();

# An HTTP upstream on a unix socket, in a child process: answers each request
# with the raw response head that %$heads gives for its path (any header,
# including empty ones, which `add_header` cannot send), then "ok\n".
sub raw_upstream {
    my ($path, %heads) = @_;
    unlink $path;
    my $srv = IO::Socket::UNIX->new(Local => $path, Listen => 8) or die "listen $path: $!";
    my $pid = fork // die "fork: $!";
    if ($pid) {
        close $srv;
        return $pid;
    }
    alarm 20;
    while (my $c = $srv->accept) {
        my $req = '';
        while ($req !~ /\r\n\r\n/) {
            sysread($c, $req, 4096, length $req) or last;
        }
        my ($uri) = $req =~ m{^\S+ (\S+)};
        my $head = $heads{$uri // ''} // "HTTP/1.1 404 Not Found\r\n";
        print $c $head, "Content-Length: 3\r\nConnection: close\r\n\r\nok\n";
        close $c;
    }
    # Not exit: Test::Nginx's END block would run in this child too and stop nginx.
    POSIX::_exit(0);
}

# The Cache-Control lines of a response, as one string.
sub cache_control {
    my $cc = shift->{headers}{'cache-control'} // return '';
    return ref $cc ? join(' | ', @$cc) : $cc;
}

# The number of live entries in a session map (default "sessions"), from shared_map_api.
sub sessions_in_map {
    my $map = shift // 'sessions';
    my $r = call(GET => "/api/$map");
    $r->{content} =~ /"entries":\s*(\d+)/ or die "no entry count: $r->{content}";
    return $1;
}

share_with_init(qw(raw_upstream cache_control sessions_in_map call set_cookie new_sid is isnt ok like unlike));

use_default_config(http_config => <<'_EOC_', config => <<'_EOC_');
    shared_map sessions hashmap?space=1m;

    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location /backend/ {
            return 200 "got: $http_x_session evil=$http_x_evil\n";
        }
        location = /backend/login {
            add_header X-Shared-Map-Session "user=$arg_user";
            add_header Cache-Control "public, max-age=60";
            return 200 "welcome $arg_user\n";
        }
        location = /backend/cart {
            add_header X-Shared-Map-Session "cart=1";
            return 200 "cart\n";
        }
        location = /backend/logout {
            add_header X-Shared-Map-Session-Destroy 1;
            add_header Cache-Control "public, max-age=60";
            return 200 "bye\n";
        }
        location = /backend/rotate {
            add_header X-Shared-Map-Session-Rotate 1;
            return 200 "rotated\n";
        }
        location = /backend/promote {
            add_header X-Shared-Map-Session "user=$arg_user; role=admin";
            add_header X-Shared-Map-Session-Rotate 1;
            return 200 "promoted\n";
        }
    }
_EOC_
    shared_map_session sessions;

    location = /session {
        shared_map_session_api;
    }
    location = /trusted/session {
        shared_map_session_api write;
    }
    location /api/ {
        shared_map_api;
    }
    location /app/ {
        proxy_set_header X-Session $shared_map_session;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/backend/;
    }
    location = /whoami {
        return 200 "$shared_map_session_id $shared_map_session";
    }
_EOC_

run_tests();

__DATA__

=== TEST 1: finding 1: the session API is read-only unless given write
--- init
my $sid = new_sid(call(GET => '/app/login?user=alice')) or die 'no session';
for my $m (qw(PUT POST DELETE PATCH)) {
    my $r = call($m => '/session', undef, 'user=admin');
    is $r->{status}, 405, "anonymous $m: 405";
    is $r->{headers}{allow}, 'GET, HEAD', "$m: Allow names the read methods only";
    is set_cookie($r), '', "$m: no cookie";
}
is call(PUT => '/session', $sid, 'user=admin')->{status}, 405, 'PUT on a live session: 405';
is call(DELETE => '/session', $sid)->{status}, 405, 'DELETE on a live session: 405';
is call(GET => '/session', $sid)->{content}, 'user=alice', 'the session is unchanged';
is call(HEAD => '/session', $sid)->{status}, 200, 'HEAD is allowed';
--- request
GET /session
--- error_code: 404
--- no_error_log
[error]



=== TEST 2: finding 1: with write, PUT creates and DELETE ends the session
--- init
my $p = call(PUT => '/trusted/session', undef, 'user=alice');
is $p->{status}, 201, 'PUT: 201';
my $sid = new_sid($p) or die 'no cookie';
is call(PUT => '/trusted/session', $sid, 'user=bob')->{status}, 204, 'PUT again: 204';
is call(GET => '/session', $sid)->{content}, 'user=bob', 'read through the read-only API';
is call(POST => '/trusted/session', $sid, 'x')->{headers}{allow}, 'GET, HEAD, PUT, DELETE', 'Allow with write';
is call(DELETE => '/trusted/session', $sid)->{status}, 204, 'DELETE: 204';
is call(GET => '/session', $sid)->{status}, 404, 'gone';
--- request
GET /session
--- error_code: 404



=== TEST 3: finding 1: an unknown parameter of shared_map_session_api stops nginx
--- config
    shared_map_session sessions;
    location = /session {
        shared_map_session_api readwrite;
    }
--- request
GET /
--- must_die
--- error_log
invalid parameter "readwrite"



=== TEST 4: finding 2: anonymous clients can neither create sessions nor evict a logged-in user
--- http_config
    shared_map sessions hashmap?space=64k&entries=4&evict;
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location /backend/ {
            return 200 "got: $http_x_session\n";
        }
        location = /backend/login {
            add_header X-Shared-Map-Session "user=alice";
            return 200 "welcome\n";
        }
    }
--- init
my $sid = new_sid(call(GET => '/app/login')) or die 'no session';
my %status;
for (1 .. 50) {
    $status{ call(PUT => '/session', undef, "junk=$_")->{status} }++;
    $status{ call(DELETE => '/session')->{status} }++;
    call(GET => '/app/page');
    call(GET => '/session');
}
is join(',', sort keys %status), '405', 'every anonymous write is refused';
is sessions_in_map(), 1, 'the map holds the one session';
is call(GET => '/app/page', $sid)->{content}, "got: user=alice\n", 'alice is still logged in';
--- request
GET /session
--- error_code: 404



=== TEST 5: finding 3: an upstream write gives a new id and the old id dies at once
--- init
my $old = new_sid(call(GET => '/app/cart')) or die 'no session';
my $r = call(GET => '/app/login?user=alice', $old);
my $new = new_sid($r);
ok $new, 'the login sets a new cookie';
isnt $new, $old, 'with a new id';
is scalar(() = set_cookie($r) =~ /SMSESSION=/g), 1, 'one Set-Cookie';
is call(GET => '/whoami', $old)->{content}, ' ', 'the old id names nothing';
is call(GET => '/whoami', $new)->{content}, "$new user=alice", 'the new id holds the data';
is sessions_in_map(), 1, 'one session in the map';
--- request
GET /whoami
--- response_body_like: ^ $
--- no_error_log
[error]



=== TEST 6: finding 3: an id planted in a victim's browser never carries the victim's login
--- init
# The attacker gets a live session of their own and plants its id in the victim's browser.
my $planted = new_sid(call(GET => '/app/cart')) or die 'no session';
# The victim logs in; the application writes only the user, without -Destroy.
my $victim = new_sid(call(GET => '/app/login?user=victim', $planted)) or die 'no new cookie';
isnt $victim, $planted, 'the victim gets an id of its own';
is call(GET => '/app/page', $planted)->{content}, "got:  evil=\n", 'the planted id carries nothing';
is call(GET => '/session', $planted)->{status}, 404, 'not even through the API';
is call(GET => '/app/page', $victim)->{content}, "got: user=victim evil=\n", 'the victim is logged in';
--- request
GET /whoami
--- response_body_like: ^ $



=== TEST 7: finding 3: rotate=off keeps the id; X-Shared-Map-Session-Rotate asks for a new one
--- config
    shared_map_session sessions rotate=off;
    location /app/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/backend/;
    }
    location = /whoami {
        return 200 "$shared_map_session_id $shared_map_session";
    }
--- init
my $sid = new_sid(call(GET => '/app/cart')) or die 'no session';
my $r = call(GET => '/app/login?user=alice', $sid);
is set_cookie($r), '', 'rotate=off: a write keeps the id';
is call(GET => '/whoami', $sid)->{content}, "$sid user=alice", 'and stores the data';
$r = call(GET => '/app/promote?user=alice', $sid);
my $new = new_sid($r);
ok $new && $new ne $sid, 'X-Shared-Map-Session-Rotate: 1 gives a new id';
ok !exists $r->{headers}{'x-shared-map-session-rotate'}, 'the header never reaches the client';
is call(GET => '/whoami', $sid)->{content}, ' ', 'the old id is dead';
is call(GET => '/whoami', $new)->{content}, "$new user=alice; role=admin", 'the new id holds the data';
$r = call(GET => '/app/rotate', $new);
my $third = new_sid($r);
ok $third && $third ne $new, 'X-Shared-Map-Session-Rotate alone moves the session to a new id';
is call(GET => '/whoami', $new)->{content}, ' ', 'the old id is dead';
is call(GET => '/whoami', $third)->{content}, "$third user=alice; role=admin", 'the data moved with it';
is call(GET => '/app/rotate')->{headers}{'set-cookie'}, undef, 'without a session it creates none';
--- request
GET /whoami
--- response_body_like: ^ $



=== TEST 8: finding 3: rotate=yes stops nginx
--- config
    shared_map_session sessions rotate=yes;
--- request
GET /
--- must_die
--- error_log
invalid parameter "rotate=yes"



=== TEST 9: finding 4: responses that set or expire the cookie get Cache-Control: private, no-store
--- init
my $r = call(GET => '/app/login?user=alice');
my $sid = new_sid($r) or die 'no session';
is cache_control($r), 'private, no-store', 'login: replaces the upstream public, max-age=60';
my $u = call(GET => '/app/page', $sid);
is cache_control($u), '', 'a response that sets no cookie is left alone';
$r = call(GET => '/app/logout', $sid);
like set_cookie($r), qr/^SMSESSION=; Max-Age=0;/, 'logout expires the cookie';
is cache_control($r), 'private, no-store', 'logout: replaces the upstream public, max-age=60';
my $p = call(PUT => '/trusted/session', undef, 'x=1');
is $p->{status}, 201, 'API PUT: 201';
is cache_control($p), 'private, no-store', 'API 201';
my $d = call(DELETE => '/trusted/session', new_sid($p));
is $d->{status}, 204, 'API DELETE: 204';
is cache_control($d), 'private, no-store', 'API 204';
--- request
GET /whoami
--- response_body_like: ^ $



=== TEST 10: finding 5: CR, LF and NUL that reached the map another way never leave in a variable
--- init
my $sid = new_sid(call(GET => '/app/login?user=alice')) or die 'no session';
my $put = call(PUT => "/api/sessions?key=$sid", undef, "user=alice\r\nX-Evil: 1\0%");
is $put->{status}, 204, 'the data is replaced through shared_map_api';
my $r = call(GET => '/app/page', $sid);
is $r->{content}, "got: user=alice%0D%0AX-Evil: 1%00%25 evil=\n", 'the upstream gets one escaped header';
is call(GET => '/whoami', $sid)->{content}, "$sid user=alice%0D%0AX-Evil: 1%00%25", 'both variables are escaped';
is call(GET => '/session', $sid)->{content}, "user=alice\r\nX-Evil: 1\0%", 'the API returns the exact bytes';
--- request
GET /whoami
--- response_body_like: ^ $
--- no_error_log
[error]



=== TEST 11: finding 6: a response replaced by the not-modified filter still carries the one cookie
--- http_config
    # a map of its own: a reload (HUP mode) keeps the default one with its sessions
    shared_map sessions11 hashmap?space=1m;
    proxy_cache_path $TEST_NGINX_HTML_DIR/cache keys_zone=c:1m;
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location = /backend/login {
            add_header X-Shared-Map-Session "user=alice";
            add_header Cache-Control "max-age=60";
            return 200 "welcome\n";
        }
    }
--- config
    shared_map_session sessions11;
    location /api/ {
        shared_map_api;
    }
    location /app/ {
        # The upstream's response is cacheable, so nginx checks If-Match itself,
        # after the session filter ran, and answers 412 with fresh headers.
        proxy_cache c;
        proxy_cache_key $request_uri$msec;
        proxy_set_header If-Match "";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/backend/;
    }
    location = /whoami {
        return 200 "$shared_map_session_id $shared_map_session";
    }
--- init
use HTTP::Tiny;
my $r = HTTP::Tiny->new(keep_alive => 0)->get("http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}/app/login",
    { headers => { 'If-Match' => '"nope"' } });
is $r->{status}, 412, 'If-Match fails: 412';
my $sid = new_sid($r);
ok $sid, 'the 412 carries the cookie of the session the upstream wrote';
is scalar(() = set_cookie($r) =~ /SMSESSION=/g), 1, 'one Set-Cookie';
is cache_control($r), 'private, no-store', 'and Cache-Control';
is call(GET => '/whoami', $sid)->{content}, "$sid user=alice", 'the cookie names the session';
is sessions_in_map('sessions11'), 1, 'one session in the map';
--- request
GET /whoami
--- response_body_like: ^ $



=== TEST 12: finding 6: $shared_map_incr read by name counts once across an internal redirect
--- skip_eval
1: !-f '/usr/lib/nginx/modules/ngx_http_lua_module.so' || ($ENV{TEST_NGINX_BINARY} // '') ne '/usr/sbin/nginx'
--- main_config
    load_module /usr/lib/nginx/modules/ndk_http_module.so;
    load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
    load_module $TEST_NGINX_MODULE;
--- http_config
    shared_map counters hashmap?space=64k;
--- config
    shared_map_key counters $uri;
    location = /first {
        # Lua reads the variable by name (nginx's cache is bypassed), then
        # redirects, which zeroes the modules' request contexts.
        rewrite_by_lua_block {
            ngx.req.set_header("X-First", ngx.var.shared_map_incr)
            ngx.exec("/page.shtml")
        }
    }
    location = /page.shtml {
        ssi on;
        default_type text/html;
        shared_map_key counters /first;
    }
--- user_files
>>> page.shtml
<!--# echo var="http_x_first" --> <!--# echo var="shared_map_incr" -->
--- request
GET /first
--- response_body
1 1



=== TEST 13: finding 6: $shared_map_incr read through nginx's cache and then by SSI after error_page counts once
--- http_config
    shared_map counters hashmap?space=64k;
--- config
    location = /first {
        shared_map_key counters /first;
        set $n $shared_map_incr;
        error_page 404 = /page.shtml;
        return 404;
    }
    location = /page.shtml {
        ssi on;
        default_type text/html;
        shared_map_key counters /first;
    }
--- user_files
>>> page.shtml
<!--# echo var="n" --> <!--# echo var="shared_map_incr" -->
--- request
GET /first
--- response_body
1 1



=== TEST 14: finding 7: an empty X-Shared-Map-Session ends the session, and creates none
--- config
    shared_map_session sessions;
    location = /session {
        shared_map_session_api;
    }
    location = /trusted/session {
        shared_map_session_api write;
    }
    location /raw/ {
        proxy_pass http://unix:$TEST_NGINX_HTML_DIR/raw.sock:/;
    }
--- init
raw_upstream("$ENV{TEST_NGINX_HTML_DIR}/raw.sock",
    '/empty' => "HTTP/1.1 200 OK\r\nX-Shared-Map-Session: \r\nCache-Control: public\r\n");
my $r = call(GET => '/raw/empty');
is $r->{content}, "ok\n", 'without a session';
is set_cookie($r), '', 'creates none and sets no cookie';
my $sid = new_sid(call(PUT => '/trusted/session', undef, 'user=alice')) or die 'no session';
$r = call(GET => '/raw/empty', $sid);
like set_cookie($r), qr/^SMSESSION=; Max-Age=0;/, 'with a session: the cookie expires';
is cache_control($r), 'private, no-store', 'kept out of caches';
ok !exists $r->{headers}{'x-shared-map-session'}, 'the header is hidden';
is call(GET => '/session', $sid)->{status}, 404, 'the session is gone';
my $p = call(PUT => '/trusted/session', undef, '');
is $p->{status}, 400, 'an empty PUT is refused';
is set_cookie($p), '', 'and creates nothing';
--- request
GET /session
--- error_code: 404




=== TEST 15: finding 6: an error_page redirect to a location that writes the session: one session, one cookie
--- config
    shared_map_session sessions;
    location /api/ {
        shared_map_api;
    }
    location = /login {
        # nginx drops an intercepted response's headers, session ones included;
        # error_page then redirects, which zeroes the modules' request contexts.
        proxy_intercept_errors on;
        error_page 404 = /app/login?user=alice;
        proxy_pass http://unix:$TEST_NGINX_HTML_DIR/raw.sock:/first;
    }
    location /app/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/backend/;
    }
    location = /whoami {
        return 200 "$shared_map_session_id $shared_map_session";
    }
--- init
raw_upstream("$ENV{TEST_NGINX_HTML_DIR}/raw.sock",
    '/first' => "HTTP/1.1 404 Not Found\r\nX-Shared-Map-Session: user=first\r\n");
my $old = new_sid(call(GET => '/app/cart')) or die 'no session';
my $r = call(GET => '/login', $old);
is $r->{status}, 200, 'the error page answers';
is scalar(() = set_cookie($r) =~ /SMSESSION=/g), 1, 'one Set-Cookie';
my $sid = new_sid($r) or die 'no cookie';
isnt $sid, $old, 'with a new id';
is call(GET => '/whoami', $sid)->{content}, "$sid user=alice", 'the redirect target wrote the session';
is call(GET => '/whoami', $old)->{content}, ' ', 'the old id is dead';
is sessions_in_map(), 1, 'one session in the map';
--- request
GET /whoami
--- response_body_like: ^ $



=== TEST 16: finding 9: with two live ids the first wins; a few ids are looked up, in the request's order
--- init
use HTTP::Tiny;
my $a = new_sid(call(GET => '/app/login?user=alice')) or die 'no session';
my $b = new_sid(call(GET => '/app/login?user=bob')) or die 'no session';
my @dead = map { sprintf '%032x', $_ } 1 .. 3;
my $whoami = sub {
    my $r = HTTP::Tiny->new(keep_alive => 0)->get("http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}/whoami",
        { headers => { Cookie => shift } });
    return $r->{content};
};
is $whoami->("SMSESSION=$a; SMSESSION=$b"), "$a user=alice", 'alice first: alice';
is $whoami->("SMSESSION=$b; SMSESSION=$a"), "$b user=bob", 'bob first: bob';
is $whoami->(["SMSESSION=$b", "SMSESSION=$a"]), "$b user=bob", 'over two Cookie lines, the first line first';
is $whoami->(join '; ', (map {"SMSESSION=$_"} @dead[0, 1]), "SMSESSION=$a"), "$a user=alice",
    'a live id after two dead ones: found';
is $whoami->(join '; ', (map {"SMSESSION=$_"} @dead), "SMSESSION=$a"), ' ', 'after three dead ones: not looked up';
is $whoami->(join '; ', (map {"SMSESSION=junk$_"} 1 .. 20), "SMSESSION=$a"), "$a user=alice",
    'values not shaped like an id cost no lookup';
--- request
GET /whoami
--- response_body_like: ^ $



=== TEST 17: finding 9: a request with 170 session cookies makes 3 lookups, not 170
--- init
use HTTP::Tiny;
my $misses = sub {
    call(GET => '/api/sessions?limit=0')->{content} =~ /"misses":(\d+)/ or die 'no misses';
    return $1;
};
my $before = $misses->();
my $cookie = join '; ', map { sprintf 'SMSESSION=%032x', 1000 + $_ } 1 .. 170;
my $r = HTTP::Tiny->new(keep_alive => 0)->get("http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}/whoami",
    { headers => { Cookie => $cookie } });
is $r->{content}, ' ', 'no session';
is $misses->() - $before, 3, 'three lookups missed';
--- request
GET /whoami
--- response_body_like: ^ $
