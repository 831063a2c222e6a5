package SharedMapTest;
# Shared set-up for the t/ files: every block gets the module loaded and the
# file's default http and server configuration unless it brings its own. A block
# whose name starts with "..." gets nothing, so it continues the previous block
# in the same running nginx. Written for OpenResty's Test::Nginx.
use strict;
use warnings;
use Exporter 'import';
use HTTP::Tiny;
use FindBin;

our @EXPORT = qw(use_default_config use_api_config share_with_init master_pid worker_pids call set_cookie new_sid
                 example_config);

sub use_default_config {
    my (%default) = @_;
    my $preprocessor = main->can('add_block_preprocessor')
        or die "use Test::Nginx::Socket before SharedMapTest";
    $preprocessor->(sub {
        my $block = shift;
        return if $block->name =~ /^\S+ \d+: \.\.\./;
        $block->set_value(main_config => 'load_module $TEST_NGINX_MODULE;')
            if !defined $block->main_config;
        for my $section (qw(http_config config)) {
            $block->set_value($section => $default{$section})
                if defined $default{$section} && !defined $block->$section;
        }
    });
}

# The API suites (t/1xx): two workers under a master (so a request may reach
# either), blocks in file order (later blocks read what earlier ones wrote), and
# by default maps "m" (a tinymap) and "h" (a hashmap) served at /api/NAME and "m"
# alone at /m. Options: h_entries (entries of "h"), config (replaces the
# locations), more_config (added to them).
sub use_api_config {
    my (%opt) = @_;
    main->can($_)->() for qw(master_on no_shuffle no_long_string);
    main->can('workers')->(2);
    my $h = 'hashmap?space=1m' . ($opt{h_entries} ? "&entries=$opt{h_entries}" : '');
    my $config = $opt{config} // <<'_EOC_';
    location /api/ { shared_map_api; }
    location = /m { shared_map_api m; }
_EOC_
    use_default_config(
        http_config => "    shared_map m tinymap?space=1m&entries=1000;\n    shared_map h $h;\n",
        config      => $config . ($opt{more_config} // ''),
    );
}

# Test::Nginx evaluates `--- init` code in package Test::Nginx::Util, and some
# of a block's eval'd sections in Test::Nginx::Socket: make the named subs of
# the test file (and these helpers) callable there.
sub share_with_init {
    my @names = @_;
    no strict 'refs';
    for my $pkg (qw(Test::Nginx::Util Test::Nginx::Socket)) {
        *{"${pkg}::$_"} = \&{"main::$_"} for @names;
    }
}

# The pid in an nginx pid file, by default the running test nginx's master;
# undef when there is none.
sub master_pid {
    my $file = shift // Test::Nginx::Util::server_root() . '/logs/nginx.pid';
    open my $f, '<', $file or return undef;
    my $pid = <$f>;
    return undef unless defined $pid;
    chomp $pid;
    return $pid;
}

# The pids of a master's live children (its workers), by default the running
# test nginx's, in ascending order.
sub worker_pids {
    my $master = shift // master_pid() // return ();
    my @pids;
    for my $status (glob '/proc/[0-9]*/status') {
        open my $f, '<', $status or next;
        my $s = do { local $/; <$f> };
        # A worker that died and is not yet reaped (a zombie) is no worker.
        push @pids, $status =~ m{/proc/(\d+)/} if $s =~ /^PPid:\s*$master$/m && $s !~ /^State:\s*Z/m;
    }
    # An array, so that a caller counting them in scalar context gets the count.
    my @sorted = sort { $a <=> $b } @pids;
    return @sorted;
}

# One request on a fresh connection; $sid, if any, is sent as the session cookie.
sub call {
    my ($method, $path, $sid, $body) = @_;
    my %opt = (headers => { $sid ? (Cookie => "SMSESSION=$sid") : () });
    $opt{content} = $body if defined $body;
    return HTTP::Tiny->new(keep_alive => 0)
        ->request($method, "http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}$path", \%opt);
}

# The Set-Cookie line(s) a response carries, or ''.
sub set_cookie {
    my $sc = shift->{headers}{'set-cookie'} // return '';
    return ref $sc ? join("\n", @$sc) : $sc;
}

# The session id a response gives the client, or undef.
sub new_sid { set_cookie(shift) =~ /^SMSESSION=([0-9a-f]{32});/ ? $1 : undef }

# The http-level directives and the first server's body of an example in
# nginx-conf/, as a test's http_config and config: the example itself runs,
# minus its `listen` and log lines (the test's own server listens). Each
# pair in @subst is a regex and its replacement, applied to the file first.
sub example_config {
    my ($file, @subst) = @_;
    my $path = "$FindBin::Bin/../nginx-conf/$file";
    open my $fh, '<', $path or die "$path: $!";
    my $text = do { local $/; <$fh> };
    while (my ($re, $to) = splice @subst, 0, 2) {
        $text =~ s/$re/$to/g or die "$file: no match for $re";
    }
    my ($http) = $text =~ /^http \{\n(.*)^\}/ms or die "$file: no http block";
    my ($before, $after) = split /^    server \{\n/m, $http, 2;
    defined $after or die "$file: no server block";
    my ($depth, $body) = (1, '');
    for my $line (split /^/, $after) {
        $depth += () = $line =~ /\{/g;
        $depth -= () = $line =~ /\}/g;
        last if $depth == 0;
        $body .= $line;
    }
    $_ = join '', grep { !/^\s*(listen|access_log|error_log|default_type)\b/ } split /^/ for $before, $body;
    return ($before, $body);
}

1;
