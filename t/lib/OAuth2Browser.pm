package OAuth2Browser;

# A tiny browser for the login tests: keeps cookies (name, path, Max-Age,
# deletion), follows no redirect by itself, and logs in at the test
# provider through its devInteractions pages with plain HTTP posts.

use strict;
use warnings;
use HTTP::Tiny;

sub uri_escape { my ($s) = @_; $s =~ s/([^A-Za-z0-9\-._~])/sprintf("%%%02X", ord $1)/ge; $s }

sub new {
    my ($class, %o) = @_;
    return bless { jar => {}, http => HTTP::Tiny->new(max_redirect => 0, timeout => 30), %o }, $class;
}

sub cookie_header {
    my ($self, $path) = @_;
    my @c;
    for my $k (sort keys %{ $self->{jar} }) {
        my $c = $self->{jar}{$k};
        next unless index($path, $c->{path}) == 0;
        push @c, "$c->{name}=$c->{value}";
    }
    return join('; ', @c);
}

sub store {
    my ($self, $set) = @_;
    for my $line (ref $set ? @$set : ($set // ())) {
        my ($nv, @attrs) = split /;\s*/, $line;
        my ($n, $v) = split /=/, $nv, 2;
        my %a = map { my ($k, $x) = split /=/, $_, 2; (lc $k => $x // 1) } @attrs;
        my $path = $a{path} // '/';
        my $key = "$n $path";
        if ((defined $a{'max-age'} && $a{'max-age'} <= 0) || (defined $a{expires} && $a{expires} =~ /1970/)) {
            delete $self->{jar}{$key};
        } else {
            $self->{jar}{$key} = { name => $n, value => $v, path => $path, attrs => \%a };
        }
    }
}

# cookies by name (value), for assertions
sub cookie { my ($self, $name) = @_; for (values %{ $self->{jar} }) { return $_->{value} if $_->{name} eq $name } undef }
sub cookie_names { my ($self) = @_; sort map { $_->{name} } values %{ $self->{jar} } }
sub cookie_attrs { my ($self, $name) = @_; for (values %{ $self->{jar} }) { return $_->{attrs} if $_->{name} eq $name } undef }
sub set_cookie { my ($self, $name, $value) = @_; $self->{jar}{"$name /"} = { name => $name, value => $value, path => '/', attrs => {} } }
sub drop_cookie { my ($self, $name) = @_; delete $self->{jar}{$_} for grep { /^\Q$name\E / } keys %{ $self->{jar} } }

sub request {
    my ($self, $method, $url, $headers, $body) = @_;
    my ($path) = $url =~ m{^https?://[^/]+(/[^?#]*)?};
    my %h = (%{ $headers || {} });
    my $c = $self->cookie_header($path || '/');
    $h{cookie} = $c if length $c;
    my %opt = (headers => \%h);
    if (defined $body) {
        $opt{content} = $body;
        $h{'content-type'} //= 'application/x-www-form-urlencoded';
    }
    my $r = $self->{http}->request($method, $url, \%opt);
    $self->store($r->{headers}{'set-cookie'});
    $self->{last} = $r;
    return $r;
}

sub get { my ($self, $url, $h) = @_; $self->request('GET', $url, $h) }

sub absolute {
    my ($base, $loc) = @_;
    return $loc if $loc =~ m{^https?://};
    my ($origin) = $base =~ m{^(https?://[^/]+)};
    return "$origin$loc";
}

# From a 302 to the provider, log in as $user and consent; returns the
# response that redirects back to the callback (not followed).
sub login_at_provider {
    my ($self, $auth_url, $user) = @_;
    my $url = $auth_url;
    for (1 .. 12) {
        my $r = $self->get($url, { accept => 'text/html' });
        if ($r->{status} =~ /^30[123]$/) {
            my $loc = absolute($url, $r->{headers}{location});
            return $r if $loc !~ m{^\Q$self->{op}\E};
            $url = $loc;
            next;
        }
        if ($r->{status} == 200 && $url =~ m{/interaction/([^/?]+)}) {
            my $uid = $1;
            my $html = $r->{content};
            my ($action) = $html =~ /<form[^>]*action="([^"]*)"/;
            $action //= "/interaction/$uid";
            my $body = $html =~ /name="login"/
                ? 'prompt=login&login=' . uri_escape($user) . '&password=pw'
                : 'prompt=consent';
            my $p = $self->request('POST', absolute($url, $action), { accept => 'text/html' }, $body);
            die "provider refused the interaction: $p->{status} $p->{content}\n" unless $p->{status} =~ /^30[123]$/;
            $url = absolute($url, $p->{headers}{location});
            next;
        }
        die "unexpected provider answer at $url: $r->{status}\n" . substr($r->{content}, 0, 400) . "\n";
    }
    die "login loop did not end\n";
}

# The whole round trip: GET $start (a browser navigation), log in, follow the
# callback. Returns the callback's response (a 302 to the original URL).
sub login {
    my ($self, $start, $user) = @_;
    my $r = $self->get($start, { accept => 'text/html' });
    die "expected a redirect to the provider, got $r->{status}\n" unless $r->{status} == 302;
    my $back = $self->login_at_provider($r->{headers}{location}, $user // 'alice');
    return $self->get(absolute($start, $back->{headers}{location}), { accept => 'text/html' });
}

1;
