# Hostile input (issue 11): 1,500 malformed or random requests to the API and
# the session API, each on its own connection: bad percent-encoding, huge and
# empty keys, numbers out of range, unknown methods and arguments, random
# bodies, bodies shorter or longer than their Content-Length, random cookies.
# No answer may be a 5xx other than 507, and no worker may exit. The requests
# are the same on every run (a fixed seed); about 3 seconds.

use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapTest;

our $Requests = 1500;

# One random request, as raw bytes, and whether its body is cut short.
sub hostile_request {
    my @methods = qw(GET GET PUT PUT POST POST DELETE HEAD PATCH OPTIONS TRACE FOO);
    my @paths = ('/api/t', '/api/h', '/api/e', '/api/', '/api/nope', '/api/t/x', '/ro', '/session', '/session',
                 '/api/%zz', '/api/' . ('m' x 300));
    my @names = qw(key key key ttl type nx incr init prefix limit format foo KEY key%00 %zz);
    my @values = (
        '', 'a', 'k%2Fb', '%00%ff', '%', '%4', '%zz', '%%', '+', ' ', 'x' x (1 + int rand 3000),
        join('', map { sprintf '%%%02x', int rand 256 } 1 .. 1 + int rand 40),
        '99999999999999999999', '-9223372036854775809', '9223372036854775807', '2147483648', '-', '1e5',
        '0x10', '1.5', '30s', '1h30m', '-1', '0', 'int', 'long', 'string', 'prometheus', 'json', 'html',
    );
    my $method = $methods[rand @methods];
    my $path = $paths[rand @paths];
    my @args;
    for (1 .. int rand 5) {
        my $name = $names[rand @names];
        push @args, rand() < 0.15 ? $name : "$name=" . $values[rand @values];
    }
    if (rand() < 0.5) {
        # Nearly valid: a real map, a random key, sometimes a real argument.
        my @valid = ([PUT => 'ttl=' . int rand 100], [PUT => 'type=long'], [PUT => 'nx'], [PUT => ''],
                     [POST => 'incr=' . (int(rand 200) - 100)], [POST => 'incr=9223372036854775807'],
                     [POST => 'incr=1&init=-9223372036854775808'], [GET => ''], [DELETE => ''], [GET => 'prefix=a']);
        my ($m, $extra) = @{ $valid[rand @valid] };
        $method = $m;
        $path = ('/api/t', '/api/h', '/api/e', '/session')[rand 4];
        my $key = join '', map { sprintf '%%%02x', int rand 256 } 1 .. (rand() < 0.05 ? 2000 : int rand 40);
        @args = ("key=$key", $extra ne '' ? $extra : ());
        @args = () if $path eq '/session';
    }
    my $query = @args ? '?' . join('&', @args) : '';
    $query = '?' . join('', map { chr(33 + int rand 94) } 1 .. int rand 60) if rand() < 0.05;
    my $body = '';
    if (rand() < 0.5) {
        my $len = rand() < 0.1 ? 40000 + int rand 30000 : int rand 600;
        $body = rand() < 0.5 ? join('', map { chr int rand 256 } 1 .. $len)
              : ('1', '-5', '2147483648', '', 'abc', "a\r\nb")[rand 6];
    }
    my $length = length $body;
    my $short = 0;
    my $r = rand;
    if ($r < 0.08 && $length > 0) { $length += 1 + int rand 100; $short = 1 }    # shorter than said
    elsif ($r < 0.16) { $body .= 'GARBAGE' x (1 + int rand 5) }                  # longer than said
    my $cookie = ('SMSESSION=' . join('', map { (0 .. 9, 'a' .. 'f')[rand 16] } 1 .. 32),
                  'SMSESSION=', 'SMSESSION=zz', 'a=b; SMSESSION=' . ('0' x 32), '')[rand 5];
    my $head = "$method $path$query HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n";
    $head .= "Cookie: $cookie\r\n" if $cookie ne '';
    $head .= "Content-Length: $length\r\n" if $method ne 'GET' || $body ne '';
    $head .= "If-Match: \"" . int(rand 1000) . "\"\r\n" if rand() < 0.05;
    return ("$head\r\n$body", $short);
}

# Sends every request; returns the count of answers by status.
sub hostile_run {
    require IO::Socket::INET;
    srand(20261122);
    my (%status, @bad);
    for my $i (1 .. $Requests) {
        my ($req, $short) = hostile_request();
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ENV{TEST_NGINX_SERVER_PORT},
                                      Proto => 'tcp', Timeout => 5) or die "connect: $!";
        $s->send($req);
        shutdown($s, 1) if $short;    # the client gives up mid-body
        my $resp = '';
        while (1) {
            my $got = sysread($s, my $buf, 65536);
            last if !$got;
            $resp .= $buf;
        }
        close $s;
        my ($code) = $resp =~ m{^HTTP/1\.[01] (\d{3})};
        $code //= $short ? 'closed' : 'none';
        $status{$code}++;
        push @bad, "$code: " . substr($req, 0, 120) if $code =~ /^5/ && $code ne '507' or $code eq 'none';
    }
    return (\%status, \@bad);
}

# The running nginx's workers, as "pid,pid".
sub worker_pid_list { join ',', worker_pids() }

share_with_init(qw(hostile_request hostile_run worker_pid_list));

workers(2);
master_on();
no_shuffle();
no_long_string();
timeout(60);

our $HttpConfig = <<'_EOC_';
    shared_map t tinymap?space=32k&entries=16;
    shared_map h hashmap?space=64k;
    shared_map e hashmap?space=64k&entries=64&evict&timeout=1h;
    shared_map sessions hashmap?space=32k&entries=16;
    shared_map_session sessions timeout=1m;
    client_body_timeout 1s;
    client_header_timeout 1s;
_EOC_

our $Config = <<'_EOC_';
    location /api/ { shared_map_api; client_max_body_size 64k; }
    location = /ro { shared_map_api h readonly; }
    location = /session { shared_map_session_api write; }
    location = /pids { return 200 "ok\n"; }
_EOC_

use_default_config(http_config => $HttpConfig, config => $Config);

run_tests();

__DATA__

=== TEST 1: 1,500 hostile requests: no 5xx but 507, every request answered or closed by the client
--- init
my $pids = \&worker_pid_list;
my $before = $pids->();
my ($status, $bad) = hostile_run();
Test::More::diag(join ' ', map { "$_:$status->{$_}" } sort keys %$status) if $ENV{TEST_VERBOSE};
Test::More::is(scalar(@$bad), 0, 'no 5xx but 507, and no request left unanswered')
    or Test::More::diag(join "\n", @$bad[0 .. ($#$bad < 9 ? $#$bad : 9)]);
Test::More::ok(($status->{507} // 0) > 0, 'full maps answered 507');
Test::More::ok(($status->{201} // 0) > 0 && ($status->{400} // 0) > 0, 'writes and refusals both happened');
Test::More::is($pids->(), $before, 'the same workers serve on');
--- request
GET /api/
--- response_body_like eval
qr/"maps":\[\{"name":"t"/
--- no_error_log
exited on signal
[alert]
[crit]
[emerg]
